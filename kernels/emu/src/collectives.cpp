// collectives.cpp — warp collectives: shuffles, votes, __syncwarp, mma.sync and ldmatrix.
//
// Lanes arrive one at a time (they are fibers). Each stores its operands in its own fiber record and joins
// the warp's pending collective with the same mask; every lane but the last switches away. The last lane
// computes every participant's result from the others' records (their stacks are intact while they are
// suspended), makes them runnable and carries on without a switch.
#include <stdio.h>
#include <string.h>

#include "runtime.h"

namespace keel_emu::rt {
namespace {

std::string hex_mask(unsigned mask) {
    char text[16];
    snprintf(text, sizeof text, "0x%08x", mask);
    return text;
}

std::string lane_list(unsigned lanes) {
    std::vector<unsigned> ids;
    for (unsigned l = 0; l < kWarpSize; ++l)
        if (lanes & (1u << l)) ids.push_back(l);
    return thread_ranges(ids);
}

// Thread ids (in the block) of the given lanes of a warp.
std::string thread_list(unsigned warp, unsigned lanes) {
    std::vector<unsigned> ids;
    for (unsigned l = 0; l < kWarpSize; ++l)
        if (lanes & (1u << l)) ids.push_back(warp * kWarpSize + l);
    return thread_ranges(ids);
}

// Intrinsic names come from string literals of the prelude, so equal names are almost always the same
// pointer; compare contents only when they are not.
bool same_name(const char* a, const char* b) { return a == b || strcmp(a, b) == 0; }

[[noreturn]] void collective_error(Fiber* self, const char* what, Site site, unsigned mask, const std::string& problem) {
    std::string message = describe_thread(self) + ": " + describe_site(what, site) + " with mask " + hex_mask(mask) +
                          ": " + problem;
    fail_in_fiber(self, KEEL_EMU_ERROR_WARP_COLLECTIVE, std::move(message));
}

// Joins (or opens) the warp collective `what` with `mask`; returns once every lane of the mask has arrived
// and `complete(lanes, mask)` has filled in each participant's results. `lanes` are the warp's 32 fibers.
template <class Complete>
void collective(Fiber* self, const char* what, int mode, unsigned mask, Site site, Complete&& complete) {
    Block& block = self->worker->block;
    WarpState& warp = block.warps[self->warp];
    const unsigned bit = 1u << self->lane;
    if ((mask & bit) == 0)
        collective_error(self, what, site, mask,
                         "the mask does not include the calling lane " + std::to_string(self->lane) +
                             "; each calling lane must be in its own mask.");
    if ((mask & ~warp.existing) != 0)
        collective_error(self, what, site, mask,
                         "the mask names lanes " + lane_list(mask & ~warp.existing) + " of warp " +
                             std::to_string(self->warp) + ", which do not exist (the block has " +
                             std::to_string(block.thread_count) + " threads).");
    if ((mask & warp.exited) != 0)
        collective_error(self, what, site, mask,
                         "the mask names lanes " + lane_list(mask & warp.exited) + " of warp " +
                             std::to_string(self->warp) + " (threads " + thread_list(self->warp, mask & warp.exited) +
                             "), which have already exited; every lane named in the mask must call it.");
    // Lanes of a warp may wait in several collectives at once (independent thread scheduling lets
    // divergent paths of a warp sync separately, e.g. two half-warps at different __shfl_sync calls, or
    // lanes already at the next collective). Join the pending one with the same mask and intrinsic;
    // report at once what can never complete: the same call with a different overlapping mask, or a
    // cycle (a pending collective waits for this lane while this lane's mask names lanes stuck in it).
    Collective* group = nullptr;
    for (unsigned i = 0; i < warp.pending_count; ++i) {
        Collective& pending = warp.pending[i];
        if ((pending.mask & mask) == 0) continue;
        if (pending.mask == mask && same_name(pending.what, what) && pending.mode == mode) {
            if (group == nullptr) group = &pending;
            continue;
        }
        const bool same_call = pending.site.line == site.line && pending.site.file != nullptr && site.file != nullptr &&
                               strcmp(pending.site.file, site.file) == 0 && same_name(pending.what, what);
        if (same_call && pending.mask != mask)
            collective_error(self, what, site, mask,
                             "lanes " + lane_list(pending.arrived) + " of warp " + std::to_string(self->warp) +
                                 " wait at the same call with mask " + hex_mask(pending.mask) +
                                 "; the lanes of one collective must pass the same mask.");
        if ((pending.mask & bit) != 0 && (mask & pending.arrived) != 0)
            collective_error(self, what, site, mask,
                             "lanes " + lane_list(pending.arrived) + " of warp " + std::to_string(self->warp) +
                                 " wait at " + describe_site(pending.what, pending.site) + " with mask " +
                                 hex_mask(pending.mask) + " for this lane, while this lane's mask names them: " +
                                 "neither collective can complete (the lanes of a mask must call the same " +
                                 "collective with the same mask).");
    }
    if (group == nullptr) {
        group = &warp.pending[warp.pending_count++];
        *group = Collective{what, mode, mask, 0, site};
    }
    group->arrived |= bit;
    self->wait_what = what;
    self->wait_site = site;
    self->wait_mask = mask;
    Fiber** lanes = block.fibers + self->warp * kWarpSize;
    if (group->arrived != mask) {
        self->wait = WaitKind::Collective;
        block_and_switch(self);
        return;
    }
    complete(lanes, mask);
    *group = warp.pending[--warp.pending_count];
    if (self->worker->checks.flags != 0) checks_collective(*self->worker, self->warp, mask);
    // Under KEEL_EMU_CHECK_ORDER the lanes wake from a random one on, not from lane 0.
    const unsigned first = (block.launch->checks & KEEL_EMU_CHECK_ORDER) != 0
                               ? static_cast<unsigned>(next_random(block) % kWarpSize)
                               : 0;
    for (unsigned i = 0; i < kWarpSize; ++i) {
        const unsigned l = (first + i) % kWarpSize;
        if ((mask & (1u << l)) != 0 && l != self->lane) make_ready(block, lanes[l]);
    }
}

constexpr uint64_t kPoison = ~0ull;  // what a lane gets from a source lane outside the mask (NaN, -1)

// Source lane of a shuffle, per the PTX ISA's shfl.sync pseudo-code: with c = ((32 - width) << 8) |
// (up ? 0 : 31), segment mask = c[12:8], maxLane = (lane & segmask) | (c[4:0] & ~segmask). Returns the
// lane itself when the source falls outside the lane's segment.
unsigned shuffle_source(int mode, unsigned lane, int operand, int width) {
    const unsigned segmask = static_cast<unsigned>(kWarpSize - width) & 31u;
    const unsigned cval = mode == KEEL_EMU_SHFL_UP ? 0u : 31u;
    const int max_lane = static_cast<int>((lane & segmask) | (cval & ~segmask));
    const unsigned b = static_cast<unsigned>(operand) & 31u;
    int j;
    bool valid;
    switch (mode) {
        case KEEL_EMU_SHFL_UP: j = static_cast<int>(lane) - static_cast<int>(b); valid = j >= max_lane; break;
        case KEEL_EMU_SHFL_DOWN: j = static_cast<int>(lane + b); valid = j <= max_lane; break;
        case KEEL_EMU_SHFL_XOR: j = static_cast<int>(lane ^ b); valid = j <= max_lane; break;
        default: j = static_cast<int>((lane & segmask) | (b & ~segmask)); valid = j <= max_lane; break;
    }
    return valid ? static_cast<unsigned>(j) : lane;
}

float bf16_to_float(unsigned bits16) {
    const unsigned bits = bits16 << 16;
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

}  // namespace
}  // namespace keel_emu::rt

using namespace keel_emu::rt;

extern "C" __attribute__((visibility("default"))) uint64_t keel_emu_rt_shfl(int mode, unsigned mask, uint64_t bits,
                                                                             int operand, int width, const char* what,
                                                                             const char* file, int line) {
    Fiber* self = current_worker()->current;
    const Site site{file, line};
    if (width < 1 || width > 32 || (width & (width - 1)) != 0)
        fail_in_fiber(self, KEEL_EMU_ERROR_MISUSE,
                      describe_thread(self) + ": " + describe_site(what, site) + " with width " +
                          std::to_string(width) + ": the width must be a power of two from 1 to 32.");
    self->operand_bits = bits;
    self->operand = operand;
    self->width = width;
    collective(self, what, mode, mask, site, [mode](Fiber** lanes, unsigned mask) {
        for (unsigned l = 0; l < kWarpSize; ++l) {
            if ((mask & (1u << l)) == 0) continue;
            Fiber* lane = lanes[l];
            const unsigned source = shuffle_source(mode, l, lane->operand, lane->width);
            lane->result = (mask & (1u << source)) != 0 ? lanes[source]->operand_bits : kPoison;
        }
    });
    return self->result;
}

extern "C" __attribute__((visibility("default"))) unsigned keel_emu_rt_vote(int mode, unsigned mask, int predicate,
                                                                             const char* what, const char* file,
                                                                             int line) {
    Fiber* self = current_worker()->current;
    self->operand = predicate != 0 ? 1 : 0;
    collective(self, what, mode, mask, Site{file, line}, [mode](Fiber** lanes, unsigned mask) {
        unsigned ballot = 0;
        for (unsigned l = 0; l < kWarpSize; ++l)
            if ((mask & (1u << l)) != 0 && lanes[l]->operand != 0) ballot |= 1u << l;
        uint64_t result = 0;
        switch (mode) {
            case KEEL_EMU_VOTE_BALLOT: result = ballot; break;
            case KEEL_EMU_VOTE_ANY: result = ballot != 0; break;
            case KEEL_EMU_VOTE_ALL: result = ballot == mask; break;
            default: break;
        }
        for (unsigned l = 0; l < kWarpSize; ++l)
            if ((mask & (1u << l)) != 0) lanes[l]->result = result;
    });
    return static_cast<unsigned>(self->result);
}

// On a GPU, __activemask() names the lanes executing it together — not the exited ones, nor those on
// another path. Fibers run one after another, so "together" is modeled as a convergence point: the caller
// waits until every other lane of its warp has exited, is blocked at a barrier or collective, or has
// reached __activemask too; those last are the result. So `if (i >= n) return; m = __activemask();`
// yields exactly the lanes with i < n, as on the GPU, whatever order the fibers ran in.
extern "C" __attribute__((visibility("default"))) unsigned keel_emu_rt_activemask(void) {
    Fiber* self = current_worker()->current;
    Block& block = self->worker->block;
    WarpState& warp = block.warps[self->warp];
    warp.converging |= 1u << self->lane;
    check_convergence(block, self->warp);
    if ((warp.converging & (1u << self->lane)) == 0) return static_cast<unsigned>(self->result);
    self->wait = WaitKind::Collective;
    self->wait_what = "__activemask";
    self->wait_site = Site{};
    self->wait_mask = 0;
    self->state = FiberState::Waiting;
    switch_away(self);  // not "blocked": lanes in __activemask are what convergence waits for
    return static_cast<unsigned>(self->result);
}

extern "C" __attribute__((visibility("default"))) void keel_emu_rt_mma_m16n8k16_bf16(float* d, const unsigned* a,
                                                                                      const unsigned* b, const float* c,
                                                                                      const char* file, int line) {
    Fiber* self = current_worker()->current;
    self->inputs[0] = a;
    self->inputs[1] = b;
    self->inputs[2] = c;
    self->output = d;
    collective(self, "mma_m16n8k16_bf16", 0, 0xffffffffu, Site{file, line}, [](Fiber** lanes, unsigned) {
        // Gather the whole operands from the fragments (layout in keel_emu.h), then scatter D.
        float A[16][16], B[16][8], C[16][8];
        for (unsigned l = 0; l < kWarpSize; ++l) {
            const unsigned g = l >> 2, t = l % 4;
            const auto* fa = static_cast<const unsigned*>(lanes[l]->inputs[0]);
            const auto* fb = static_cast<const unsigned*>(lanes[l]->inputs[1]);
            const auto* fc = static_cast<const float*>(lanes[l]->inputs[2]);
            for (unsigned i = 0; i < 4; ++i) {
                const unsigned row = g + ((i & 1) ? 8 : 0), col = 2 * t + ((i & 2) ? 8 : 0);
                A[row][col] = bf16_to_float(fa[i] & 0xffffu);
                A[row][col + 1] = bf16_to_float(fa[i] >> 16);
            }
            for (unsigned i = 0; i < 2; ++i) {
                const unsigned row = 2 * t + 8 * i;
                B[row][g] = bf16_to_float(fb[i] & 0xffffu);
                B[row + 1][g] = bf16_to_float(fb[i] >> 16);
            }
            for (unsigned i = 0; i < 4; ++i) C[g + ((i & 2) ? 8 : 0)][2 * t + (i & 1)] = fc[i];
        }
        for (unsigned l = 0; l < kWarpSize; ++l) {
            const unsigned g = l >> 2, t = l % 4;
            auto* fd = static_cast<float*>(lanes[l]->output);
            for (unsigned i = 0; i < 4; ++i) {
                const unsigned row = g + ((i & 2) ? 8 : 0), col = 2 * t + (i & 1);
                // Products of bf16 values are exact in fp32; the sum runs in fp32, in k order.
                float sum = C[row][col];
                for (unsigned k = 0; k < 16; ++k) sum += A[row][k] * B[k][col];
                fd[i] = sum;
            }
        }
    });
}

extern "C" __attribute__((visibility("default"))) void keel_emu_rt_ldmatrix(unsigned* out, int count, int trans,
                                                                             const void* row_address, const char* file,
                                                                             int line) {
    Fiber* self = current_worker()->current;
    const Site site{file, line};
    if (count != 1 && count != 2 && count != 4)
        fail_in_fiber(self, KEEL_EMU_ERROR_MISUSE,
                      describe_thread(self) + ": " + describe_site("ldmatrix_x", site) + " with count " +
                          std::to_string(count) + ": the count must be 1, 2 or 4.");
    if (self->lane < 8u * static_cast<unsigned>(count) && reinterpret_cast<uintptr_t>(row_address) % 16 != 0) {
        char detail[64];
        snprintf(detail, sizeof detail, "%p", row_address);
        fail_in_fiber(self, KEEL_EMU_ERROR_MISUSE,
                      describe_thread(self) + ": " + describe_site("ldmatrix_x", site) + ": row address " + detail +
                          " is not 16-byte aligned.");
    }
    self->inputs[0] = row_address;
    self->output = out;
    self->call_pc = __builtin_return_address(0);
    collective(self, "ldmatrix_x", count * 2 + trans, 0xffffffffu, site, [count, trans](Fiber** lanes, unsigned) {
        uint16_t matrices[4][8][8];
        const bool checked = lanes[0]->worker->checks.flags != 0;
        for (int i = 0; i < count; ++i)
            for (int r = 0; r < 8; ++r) {
                const Fiber* lane = lanes[8 * i + r];
                if (checked) checks_shared_read(lanes[8 * i + r], lane->inputs[0], 16, lane->call_pc);
                memcpy(matrices[i][r], lane->inputs[0], 16);
            }
        for (unsigned l = 0; l < kWarpSize; ++l) {
            auto* registers = static_cast<unsigned*>(lanes[l]->output);
            const unsigned row = l / 4, col = 2 * (l % 4);
            for (int i = 0; i < count; ++i) {
                const unsigned lo = trans ? matrices[i][col][row] : matrices[i][row][col];
                const unsigned hi = trans ? matrices[i][col + 1][row] : matrices[i][row][col + 1];
                registers[i] = lo | (hi << 16);
            }
        }
    });
}
