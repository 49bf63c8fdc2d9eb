// keel_emu_tests — runs one named test case (CTest runs each as its own process): loads a test kernel
// shared object the way the .NET side will (dlopen, keel_emu_entry_NAME), launches it through the C ABI
// and checks the results. Inputs are fresh random values (the seed is printed); outputs are poisoned
// before each launch so that an element the kernel did not write fails.
#include <dlfcn.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "keel_emu_api.h"

namespace {

[[noreturn]] void fail(const std::string& what) {
    fprintf(stderr, "FAILED: %s\n", what.c_str());
    exit(1);
}

#define CHECK(condition)                                                                          \
    do {                                                                                          \
        if (!(condition)) fail(std::string(#condition) + " (" __FILE__ ":" + std::to_string(__LINE__) + ")"); \
    } while (0)

std::mt19937_64& rng() {
    static std::mt19937_64 engine = [] {
        const uint64_t seed = std::random_device{}();
        printf("seed %llu\n", static_cast<unsigned long long>(seed));
        return std::mt19937_64(seed);
    }();
    return engine;
}

int random_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng()); }
float random_float() { return std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng()); }

// A guarded device-style buffer.
template <class T>
struct Buffer {
    T* data = nullptr;
    size_t count = 0;
    explicit Buffer(size_t n, bool guarded = true) : count(n) {
        data = static_cast<T*>(keel_emu_alloc(n * sizeof(T), guarded ? 1 : 0));
        CHECK(data != nullptr);
    }
    ~Buffer() { keel_emu_free(data); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    void poison() { memset(static_cast<void*>(data), 0xff, count * sizeof(T)); }  // NaN for floats
    T& operator[](size_t i) { return data[i]; }
};

// KEEL_EMU_TEST_CHECKS=<keel_emu_check bits, or all> runs a test with those checking modes: every kernel from its
// instrumented object (lib<name>.checked.so), every launch with the checks (CTest runs the correct-kernel cases
// so, as emu.checked.*). Buffers stay untracked there: the tests fill them from the host directly.
uint32_t test_checks() {
    static const uint32_t checks = [] {
        const char* text = getenv("KEEL_EMU_TEST_CHECKS");
        if (text == nullptr) return 0u;
        return strcmp(text, "all") == 0 ? uint32_t{KEEL_EMU_CHECKS_ALL} : static_cast<uint32_t>(strtoul(text, nullptr, 0));
    }();
    return checks;
}

struct Kernels {
    void* library = nullptr;
    explicit Kernels(const char* name, bool instrumented = test_checks() != 0) {
        const std::string path =
            std::string(KEEL_EMU_TEST_KERNEL_DIR) + "/lib" + name + (instrumented ? ".checked.so" : ".so");
        library = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (library == nullptr) fail("dlopen " + path + ": " + dlerror());
    }
    using Entry = void (*)(void**);
    Entry entry(const std::string& kernel) const {
        auto e = reinterpret_cast<Entry>(dlsym(library, ("keel_emu_entry_" + kernel).c_str()));
        if (e == nullptr) fail("no entry for " + kernel);
        return e;
    }
    const keel_emu_signature* signature(const std::string& kernel) const {
        using Getter = const keel_emu_signature* (*)();
        auto g = reinterpret_cast<Getter>(dlsym(library, ("keel_emu_signature_" + kernel).c_str()));
        if (g == nullptr) fail("no signature for " + kernel);
        return g();
    }
};

keel_emu_options options(int workers = 0, bool bounds = true, uint64_t stack = 0, uint32_t checks = test_checks(),
                         uint64_t seed = 0) {
    keel_emu_options o{};
    o.size = sizeof o;
    o.worker_threads = workers;
    o.bounds_checking = bounds ? 1 : 0;
    o.fiber_stack_bytes = stack;
    o.checks = checks;
    o.seed = seed != 0 ? seed : rng()();
    return o;
}

keel_emu_options checked(uint32_t checks, int workers = 0, uint64_t seed = 0) {
    return options(workers, true, 0, checks, seed);
}

struct Result {
    int status;
    std::string message;
};

template <class... A>
Result launch(const Kernels& k, const std::string& kernel, keel_emu_dim3 grid, keel_emu_dim3 block, size_t shared,
              const keel_emu_options& o, A... args) {
    void* pointers[sizeof...(A) + 1] = {static_cast<void*>(&args)...};
    char error[2048];
    const int status = keel_emu_launch(kernel.c_str(), k.entry(kernel), pointers, grid, block, shared, &o, error,
                                       sizeof error);
    return Result{status, error};
}

template <class... A>
void launch_ok(const Kernels& k, const std::string& kernel, keel_emu_dim3 grid, keel_emu_dim3 block, size_t shared,
               const keel_emu_options& o, A... args) {
    Result r = launch(k, kernel, grid, block, shared, o, args...);
    if (r.status != KEEL_EMU_OK) fail(kernel + " returned " + keel_emu_status_name(r.status) + ": " + r.message);
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// An error launch must return `status`, say each of `parts`, and leave the runtime fit for a good launch.
void expect_error(const Result& r, int status, std::initializer_list<const char*> parts) {
    printf("%s: %s\n", keel_emu_status_name(r.status), r.message.c_str());
    if (r.status != status)
        fail(std::string("expected ") + keel_emu_status_name(status) + ", got " + keel_emu_status_name(r.status));
    for (const char* part : parts)
        if (!contains(r.message, part)) fail(std::string("message lacks \"") + part + "\"");
    Kernels barrier("barrier");
    const unsigned n = 256 * 4;
    Buffer<float> in(n), out(n);
    for (unsigned i = 0; i < n; ++i) in[i] = random_float();
    out.poison();
    launch_ok(barrier, "keel_test_reverse", {4, 1, 1}, {256, 1, 1}, 0, options(2), in.data, out.data);
    for (unsigned i = 0; i < n; ++i) CHECK(out[i] == in[i / 256 * 256 + 255 - i % 256]);
}

bool close(double actual, double expected, double tolerance) {
    return fabs(actual - expected) <= tolerance * std::max(1.0, fabs(expected));
}

uint16_t to_bf16(float x) {  // round to nearest even
    uint32_t bits;
    memcpy(&bits, &x, 4);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return static_cast<uint16_t>(bits >> 16);
}
float from_bf16(uint16_t b) {
    const uint32_t bits = static_cast<uint32_t>(b) << 16;
    float x;
    memcpy(&x, &bits, 4);
    return x;
}

// ------------------------------------------------------------------------------------------------------
void indexing_3d() {
    Kernels k("indexing");
    const keel_emu_dim3 grid{3, 2, 2}, block{4, 3, 2};
    const unsigned blocks = 12, threads = 24;
    Buffer<unsigned> out(8 * blocks * threads);
    out.poison();
    launch_ok(k, "keel_test_indexing", grid, block, 0, options(), out.data);
    for (unsigned bz = 0; bz < 2; ++bz)
        for (unsigned by = 0; by < 2; ++by)
            for (unsigned bx = 0; bx < 3; ++bx)
                for (unsigned tz = 0; tz < 2; ++tz)
                    for (unsigned ty = 0; ty < 3; ++ty)
                        for (unsigned tx = 0; tx < 4; ++tx) {
                            const unsigned b = bx + 3 * (by + 2 * bz), t = tx + 4 * (ty + 3 * tz);
                            const unsigned* o = out.data + 8 * (b * threads + t);
                            CHECK(o[0] == tx && o[1] == ty && o[2] == tz);
                            CHECK(o[3] == bx && o[4] == by && o[5] == bz);
                            CHECK(o[6] == (4u | 3u << 10 | 2u << 20));
                            CHECK(o[7] == (3u | 2u << 10 | 2u << 20));
                        }
}

void barrier_reverse() {
    Kernels k("barrier");
    for (unsigned threads : {1u, 33u, 256u, 1024u}) {
        const unsigned blocks = 5, n = threads * blocks;
        Buffer<float> in(n), out(n);
        for (unsigned i = 0; i < n; ++i) in[i] = random_float();
        out.poison();
        launch_ok(k, "keel_test_reverse", {blocks, 1, 1}, {threads, 1, 1}, 0, options(), in.data, out.data);
        for (unsigned i = 0; i < n; ++i) CHECK(out[i] == in[i / threads * threads + threads - 1 - i % threads]);
    }
}

void barrier_scan_and_votes() {
    Kernels k("barrier");
    const unsigned blocks = 6, threads = 256, n = blocks * threads;
    Buffer<int> in(n), out(n), votes(3 * blocks);
    for (unsigned i = 0; i < n; ++i) in[i] = random_int(-3, 20);
    for (unsigned i = 0; i < threads; ++i) in[threads + i] = random_int(1, 9);       // block 1: all positive
    for (unsigned i = 0; i < threads; ++i) in[2 * threads + i] = random_int(-9, 0);  // block 2: none
    out.poison();
    votes.poison();
    launch_ok(k, "keel_test_scan", {blocks, 1, 1}, {threads, 1, 1}, 0, options(), in.data, out.data, votes.data);
    for (unsigned b = 0; b < blocks; ++b) {
        int sum = 0, count = 0;
        for (unsigned t = 0; t < threads; ++t) {
            sum += in[b * threads + t];
            CHECK(out[b * threads + t] == sum);
            count += in[b * threads + t] > 0;
        }
        CHECK(votes[3 * b] == count);
        CHECK(votes[3 * b + 1] == (count == static_cast<int>(threads)));
        CHECK(votes[3 * b + 2] == (count > 0));
    }
}

// The CUDA Programming Guide's description of each shuffle, written independently of the runtime's
// PTX-based formula.
unsigned expected_source(int op, unsigned lane, int operand, unsigned width) {
    const unsigned segment = lane / width * width;
    switch (op) {
        case 0: return segment + static_cast<unsigned>(operand) % width;
        case 1: return lane % width < static_cast<unsigned>(operand) ? lane : lane - operand;
        case 2: return lane % width + operand >= width ? lane : lane + operand;
        default: {
            const unsigned source = lane ^ static_cast<unsigned>(operand);
            return source >= segment + width ? lane : source;  // later groups: own value
        }
    }
}

template <class T>
void shuffle_type(const Kernels& k, const char* kernel, std::function<T()> draw) {
    const unsigned blocks = 2, threads = 64, n = blocks * threads;
    Buffer<T> in(n), out(n);
    Buffer<int> operand(n);
    for (unsigned i = 0; i < n; ++i) in[i] = draw();
    for (int op = 0; op < 4; ++op)
        for (unsigned width : {1u, 2u, 4u, 8u, 16u, 32u}) {
            for (unsigned i = 0; i < n; ++i)
                operand[i] = op == 0 ? random_int(0, 63) : op == 3 ? random_int(0, 31)
                                                      : random_int(0, std::min(2 * width, 31u));
            out.poison();
            launch_ok(k, kernel, {blocks, 1, 1}, {threads, 1, 1}, 0, options(), in.data, operand.data, out.data, op,
                      static_cast<int>(width));
            for (unsigned i = 0; i < n; ++i) {
                const unsigned warp_base = i / 32 * 32, lane = i % 32;
                const unsigned source = warp_base + expected_source(op, lane, operand[i], width);
                if (memcmp(&out[i], &in[source], sizeof(T)) != 0)
                    fail(std::string(kernel) + " op " + std::to_string(op) + " width " + std::to_string(width) +
                         " thread " + std::to_string(i) + " operand " + std::to_string(operand[i]));
            }
        }
}

void shuffles() {
    Kernels k("shuffle");
    shuffle_type<int>(k, "keel_test_shfl_int", [] { return random_int(-1000000, 1000000); });
    shuffle_type<unsigned>(k, "keel_test_shfl_unsigned", [] { return static_cast<unsigned>(rng()()); });
    shuffle_type<float>(k, "keel_test_shfl_float", [] { return random_float(); });
    shuffle_type<long long>(k, "keel_test_shfl_longlong", [] { return static_cast<long long>(rng()()); });
    shuffle_type<unsigned long long>(k, "keel_test_shfl_ulonglong", [] { return static_cast<unsigned long long>(rng()()); });
    shuffle_type<double>(k, "keel_test_shfl_double", [] { return std::uniform_real_distribution<double>(-1, 1)(rng()); });
}

void votes() {
    Kernels k("vote");
    const unsigned threads = 128;
    Buffer<int> predicate(threads);
    Buffer<unsigned> out(7 * threads);
    for (unsigned t = 0; t < threads; ++t) predicate[t] = random_int(0, 1) * random_int(1, 5);
    for (unsigned t = 64; t < 96; ++t) predicate[t] = random_int(1, 5);  // warp 2: all true
    for (unsigned t = 96; t < 128; ++t) predicate[t] = 0;                 // warp 3: all false
    out.poison();
    launch_ok(k, "keel_test_vote", {1, 1, 1}, {threads, 1, 1}, 0, options(), predicate.data, out.data);
    for (unsigned t = 0; t < threads; ++t) {
        const unsigned warp = t / 32 * 32, lane = t % 32;
        unsigned ballot = 0;
        for (unsigned l = 0; l < 32; ++l)
            if (predicate[warp + l] != 0) ballot |= 1u << l;
        const unsigned half = lane < 16 ? 0x0000ffffu : 0xffff0000u;
        const unsigned* o = out.data + 7 * t;
        CHECK(o[0] == ballot);
        CHECK(o[1] == (ballot != 0));
        CHECK(o[2] == (ballot == 0xffffffffu));
        CHECK(o[3] == (ballot & half));
        CHECK(o[4] == ((ballot & half) != 0));
        CHECK(o[5] == ((ballot & half) == half));
        CHECK(o[6] == 0xffffffffu);
    }
}

void activemask_after_return() {
    Kernels k("vote");
    const unsigned threads = 64;
    Buffer<float> in(threads), sums(threads);
    Buffer<unsigned> masks(threads);
    for (unsigned t = 0; t < threads; ++t) in[t] = random_float();
    for (int active : {1, 20, 32}) {
        sums.poison();
        masks.poison();
        launch_ok(k, "keel_test_activemask_after_return", {1, 1, 1}, {threads, 1, 1}, 0, options(), in.data, sums.data,
                  masks.data, active);
        const unsigned expected_mask = active == 32 ? 0xffffffffu : (1u << active) - 1;
        for (unsigned w = 0; w < 2; ++w) {
            double total = 0;
            for (int l = 0; l < active; ++l) total += in[w * 32 + l];
            CHECK(masks[w * 32] == expected_mask);
            CHECK(close(sums[w * 32], total, 1e-5));
        }
    }
}

void math_functions() {
    Kernels k("math");
    const unsigned threads = 32;
    Buffer<float> in(threads), out(24 * threads);
    for (unsigned t = 0; t < threads; ++t) in[t] = std::uniform_real_distribution<float>(0.1f, 2.0f)(rng());
    out.poison();
    launch_ok(k, "keel_test_math", {1, 1, 1}, {threads, 1, 1}, 0, options(), in.data, out.data);
    for (unsigned t = 0; t < threads; ++t) {
        const double x = in[t];
        const float xf = in[t];
        uint32_t bits;
        memcpy(&bits, &xf, 4);
        ++bits;
        float next;
        memcpy(&next, &bits, 4);
        const double expected[24] = {exp(x), exp(x), exp2(x), log(x), log(x), log2(x), sqrt(x), 1 / sqrt(x), tanh(x),
                                     erf(x), x, std::max(x, 1.0), std::min(x, 1.0), 1 / x, 1 / x, x * x + 1,
                                     2 * x - 1, std::min(std::max(x - 1, 0.0), 1.0),
                                     std::max(x, 1.0) + std::max<int>(t, 3) + std::min(t, 2u), std::min(x, 1.0), x,
                                     next, static_cast<double>(__builtin_popcount(t) + __builtin_clz(t + 1) + __builtin_ffs(t)),
                                     0.0};
        for (int i = 0; i < 24; ++i)
            if (!close(out[24 * t + i], expected[i], 1e-6))
                fail("math result " + std::to_string(i) + " for x = " + std::to_string(x) + ": " +
                     std::to_string(out[24 * t + i]) + ", expected " + std::to_string(expected[i]));
    }
}

void atomics_many_workers() {
    Kernels k("atomics");
    const unsigned blocks = 64, threads = 256, n = blocks * threads, iterations = 8;
    Buffer<int> i(1), imax(1), imin(1), cas(1);
    Buffer<unsigned> u(1), umax(1), umin(1), slot(1), exchanged(n);
    Buffer<unsigned long long> ull(1);
    Buffer<float> f(1), fexchange(1);
    Buffer<double> d(1);
    const int i0 = random_int(-100, 100);
    i[0] = i0;
    u[0] = 7;
    ull[0] = 5;
    f[0] = 0.0f;
    d[0] = 1.0;
    imax[0] = -1000000;
    imin[0] = 1000000;
    umax[0] = 0;
    umin[0] = 0xffffffffu;
    cas[0] = 0;
    slot[0] = 0xfffffff0u;
    fexchange[0] = 0.0f;
    exchanged.poison();
    launch_ok(k, "keel_test_atomics", {blocks, 1, 1}, {threads, 1, 1}, 0, options(4), i.data, u.data, ull.data, f.data,
              d.data, imax.data, imin.data, umax.data, umin.data, cas.data, slot.data, exchanged.data, fexchange.data);
    CHECK(i[0] == i0 + static_cast<int>(n * iterations));
    CHECK(u[0] == 7u + 3u * n * iterations);
    CHECK(ull[0] == 5ull + (static_cast<unsigned long long>(n) * iterations << 33));
    CHECK(f[0] == static_cast<float>(n * iterations));
    CHECK(d[0] == 1.0 + 0.5 * n * iterations);
    CHECK(cas[0] == static_cast<int>(n * iterations));
    CHECK(imax[0] == static_cast<int>(n - 1) - 5000);
    CHECK(imin[0] == -5000);
    CHECK(umax[0] == (n - 1) * 7u);
    CHECK(umin[0] == 100u);
    CHECK(fexchange[0] == 2.5f);
    // Every id went into the slot exactly once: the values taken out plus the one left are the ids and
    // the initial value, each once.
    std::vector<unsigned> seen(exchanged.data, exchanged.data + n);
    seen.push_back(slot[0]);
    std::sort(seen.begin(), seen.end());
    for (unsigned id = 0; id < n; ++id) CHECK(seen[id] == id);
    CHECK(seen[n] == 0xfffffff0u);
}

void dynamic_shared() {
    Kernels k("dynshared");
    for (bool bounds : {true, false}) {
        const unsigned blocks = 9, threads = 512, n = blocks * threads;
        Buffer<float> in(n), out(blocks);
        for (unsigned i = 0; i < n; ++i) in[i] = random_float();
        out.poison();
        launch_ok(k, "keel_test_dynamic_shared", {blocks, 1, 1}, {threads, 1, 1}, threads * sizeof(float),
                  options(2, bounds), in.data, out.data);
        for (unsigned b = 0; b < blocks; ++b) {
            double sum = 0;
            for (unsigned t = 0; t < threads; ++t) sum += in[b * threads + t];
            CHECK(close(out[b], sum, 1e-5));
        }
    }
}

struct MmaProblem {
    Buffer<uint16_t> A{256}, B{128};
    Buffer<float> C{128};
    std::vector<double> D = std::vector<double>(128);
    MmaProblem() {
        for (int i = 0; i < 256; ++i) A[i] = to_bf16(random_float());
        for (int i = 0; i < 128; ++i) B[i] = to_bf16(random_float());
        for (int i = 0; i < 128; ++i) C[i] = random_float();
        for (int m = 0; m < 16; ++m)
            for (int n = 0; n < 8; ++n) {
                double sum = C[m * 8 + n];
                for (int kk = 0; kk < 16; ++kk) sum += static_cast<double>(from_bf16(A[m * 16 + kk])) * from_bf16(B[kk * 8 + n]);
                D[m * 8 + n] = sum;
            }
    }
    void check(const float* d) const {
        for (int i = 0; i < 128; ++i)
            if (!close(d[i], D[i], 1e-5))
                fail("D[" + std::to_string(i) + "] = " + std::to_string(d[i]) + ", expected " + std::to_string(D[i]));
    }
};

void mma_fragments() {
    Kernels k("mma");
    MmaProblem p;
    Buffer<float> d(128);
    d.poison();
    launch_ok(k, "keel_test_mma_fragments", {1, 1, 1}, {32, 1, 1}, 0, options(), p.A.data, p.B.data, p.C.data, d.data);
    p.check(d.data);
}

void mma_through_ldmatrix() {
    Kernels k("mma");
    MmaProblem p;
    Buffer<float> d1(128), d2(128);
    d1.poison();
    d2.poison();
    launch_ok(k, "keel_test_mma_ldmatrix", {1, 1, 1}, {32, 1, 1}, 0, options(), p.A.data, p.B.data, p.C.data, d1.data,
              d2.data);
    p.check(d1.data);
    p.check(d2.data);
}

void ldmatrix() {
    Kernels k("ldmatrix");
    Buffer<uint16_t> matrix(32 * 8);
    Buffer<int> perm(32);
    Buffer<unsigned> out(32 * 4);
    for (int i = 0; i < 256; ++i) matrix[i] = static_cast<uint16_t>(rng()());
    std::vector<int> order(32);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng());
    for (int i = 0; i < 32; ++i) perm[i] = order[i];
    for (int count : {1, 2, 4})
        for (int trans : {0, 1}) {
            out.poison();
            launch_ok(k, "keel_test_ldmatrix", {1, 1, 1}, {32, 1, 1}, 0, options(), matrix.data, perm.data, out.data,
                      count, trans);
            // Matrix i, row r = shared row perm[8i + r]; element (r, c) = matrix[perm[8i + r] * 8 + c].
            auto element = [&](int i, unsigned r, unsigned c) { return matrix[perm[8 * i + r] * 8 + c]; };
            for (unsigned lane = 0; lane < 32; ++lane)
                for (int i = 0; i < 4; ++i) {
                    const unsigned got = out[lane * 4 + i];
                    if (i >= count) {
                        CHECK(got == 0xdeadbeefu);
                        continue;
                    }
                    const unsigned row = lane / 4, col = 2 * (lane % 4);
                    const unsigned lo = trans ? element(i, col, row) : element(i, row, col);
                    const unsigned hi = trans ? element(i, col + 1, row) : element(i, row, col + 1);
                    if (got != (lo | hi << 16))
                        fail("ldmatrix x" + std::to_string(count) + (trans ? ".trans" : "") + " lane " +
                             std::to_string(lane) + " matrix " + std::to_string(i));
                }
        }
}

void cp_async() {
    Kernels k("cpasync");
    Buffer<unsigned char> src(2048), out(2048);
    Buffer<int> sizes(128);
    for (int i = 0; i < 2048; ++i) src[i] = static_cast<unsigned char>(rng()());
    for (int i = 0; i < 128; ++i) sizes[i] = i < 17 ? i : random_int(0, 16);  // every size at least once
    out.poison();
    launch_ok(k, "keel_test_cp_async", {1, 1, 1}, {64, 1, 1}, 0, options(), src.data, sizes.data, out.data);
    for (int s = 0; s < 2; ++s)
        for (int t = 0; t < 64; ++t)
            for (int b = 0; b < 16; ++b) {
                const int at = s * 1024 + t * 16 + b;
                CHECK(out[at] == (b < sizes[s * 64 + t] ? src[at] : 0));
            }
}

void signatures() {
    Kernels shuffle("shuffle"), indexing("indexing");
    const keel_emu_signature* s = shuffle.signature("keel_test_shfl_double");
    CHECK(s->parameter_count == 5);
    const uint32_t sizes[] = {8, 8, 8, 4, 4};
    const uint32_t kinds[] = {KEEL_EMU_PARAMETER_POINTER, KEEL_EMU_PARAMETER_POINTER, KEEL_EMU_PARAMETER_POINTER,
                              KEEL_EMU_PARAMETER_SIGNED_INTEGER, KEEL_EMU_PARAMETER_SIGNED_INTEGER};
    for (int i = 0; i < 5; ++i)
        CHECK(s->parameter_sizes[i] == sizes[i] && s->parameter_alignments[i] == sizes[i] && s->parameter_kinds[i] == kinds[i]);
    const keel_emu_signature* t = indexing.signature("keel_test_indexing");
    CHECK(t->parameter_count == 1 && t->parameter_sizes[0] == 8 && t->parameter_kinds[0] == KEEL_EMU_PARAMETER_POINTER);
}

void launch_validation() {
    Kernels k("barrier");
    Buffer<float> in(1024), out(1024);
    Result r = launch(k, "keel_test_reverse", {1, 1, 1}, {2048, 1, 1}, 0, options(), in.data, out.data);
    expect_error(r, KEEL_EMU_ERROR_INVALID_LAUNCH, {"keel_test_reverse", "2048"});
    r = launch(k, "keel_test_reverse", {1, 1, 1}, {32, 32, 2}, 0, options(), in.data, out.data);
    expect_error(r, KEEL_EMU_ERROR_INVALID_LAUNCH, {"2048 threads; the limit is 1024"});
    r = launch(k, "keel_test_reverse", {0, 1, 1}, {32, 1, 1}, 0, options(), in.data, out.data);
    expect_error(r, KEEL_EMU_ERROR_INVALID_LAUNCH, {"zero dimension"});
    r = launch(k, "keel_test_reverse", {1, 70000, 1}, {32, 1, 1}, 0, options(), in.data, out.data);
    expect_error(r, KEEL_EMU_ERROR_INVALID_LAUNCH, {"exceeds the limits"});
    r = launch(k, "keel_test_reverse", {1, 1, 1}, {32, 1, 1}, 300 * 1024, options(), in.data, out.data);
    expect_error(r, KEEL_EMU_ERROR_INVALID_LAUNCH, {"dynamic shared memory"});
    keel_emu_options bad = options();
    bad.size = 8;
    r = launch(k, "keel_test_reverse", {1, 1, 1}, {32, 1, 1}, 0, bad, in.data, out.data);
    expect_error(r, KEEL_EMU_ERROR_INVALID_LAUNCH, {"keel_emu_options.size"});
}

void deadlock_early_return() {
    Kernels k("errors");
    Buffer<float> out(256);
    Result r = launch(k, "keel_test_early_return", {3, 1, 1}, {256, 1, 1}, 0, options(1), out.data);
    expect_error(r, KEEL_EMU_ERROR_BARRIER,
                 {"keel_test_early_return", "block (0,0,0)", "threads 0-127 wait at __syncthreads (", "errors.cu:",
                  "threads 128-255 exited"});
}

void barrier_mismatch() {
    Kernels k("errors");
    Buffer<float> out(256);
    Result r = launch(k, "keel_test_divergent_barrier", {1, 1, 1}, {256, 1, 1}, 0, options(), out.data);
    expect_error(r, KEEL_EMU_ERROR_BARRIER, {"different barriers", "threads 0-63 wait at __syncthreads", "threads 64-255"});
}

void mask_names_exited_lanes() {
    Kernels k("errors");
    Buffer<float> out(64);
    Result r = launch(k, "keel_test_mask_exited", {1, 1, 1}, {64, 1, 1}, 0, options(), out.data);
    expect_error(r, KEEL_EMU_ERROR_WARP_COLLECTIVE,
                 {"threads 0-15 wait at __shfl_xor_sync", "mask 0xffffffff (warp 0, waiting for lanes 16-31, which exited)",
                  "threads 16-31, 48-63 exited", "threads 32-47 wait at"});
}

void mask_mismatch() {
    Kernels k("errors");
    Buffer<float> out(32);
    Result r = launch(k, "keel_test_mask_mismatch", {1, 1, 1}, {32, 1, 1}, 0, options(), out.data);
    expect_error(r, KEEL_EMU_ERROR_WARP_COLLECTIVE,
                 {"thread (16,0,0)", "__shfl_down_sync", "mask 0xffff0000", "lanes 0-15 of warp 0 wait at the same call",
                  "with mask 0xffffffff", "same mask"});
}

void mask_without_self() {
    Kernels k("errors");
    Buffer<float> out(32);
    Result r = launch(k, "keel_test_mask_without_self", {1, 1, 1}, {32, 1, 1}, 0, options(), out.data);
    expect_error(r, KEEL_EMU_ERROR_WARP_COLLECTIVE, {"thread (0,0,0)", "__ballot_sync", "does not include the calling lane 0"});
}

void oob_global() {
    Kernels k("errors");
    const int n = 100;
    Buffer<float> p(n);
    Result r = launch(k, "keel_test_write_global", {2, 1, 1}, {64, 1, 1}, 0, options(), p.data, n, 1, 9);
    expect_error(r, KEEL_EMU_ERROR_MEMORY_FAULT,
                 {"keel_test_write_global", "block (1,0,0), thread (9,0,0)", "at offset 400 of the 400-byte guarded allocation",
                  "past its end"});
    // Index -1100: before the allocation, past the leading guard page's slack.
    r = launch(k, "keel_test_write_global", {1, 1, 1}, {8, 1, 1}, 0, options(), p.data, -1100, 0, 2);
    expect_error(r, KEEL_EMU_ERROR_MEMORY_FAULT, {"thread (2,0,0)", "bytes before the start of the 400-byte"});
}

void oob_static_shared() {
    Kernels k("errors");
    Buffer<float> out(64);
    Result r = launch(k, "keel_test_static_shared_index", {1, 1, 1}, {64, 1, 1}, 0, options(), out.data, 64);
    expect_error(r, KEEL_EMU_ERROR_BOUNDS_TRAP, {"thread (3,0,0)", "out of bounds", "liberrors.so+0x"});
}

void oob_local() {
    Kernels k("errors");
    Buffer<float> out(64);
    for (int i = 0; i < 64; ++i) out[i] = random_float();
    Result r = launch(k, "keel_test_local_index", {1, 1, 1}, {64, 1, 1}, 0, options(), out.data, 16);
    expect_error(r, KEEL_EMU_ERROR_BOUNDS_TRAP, {"thread (5,0,0)", "out of bounds"});
}

void oob_dynamic_shared() {
    Kernels k("errors");
    Buffer<float> out(64);
    Result r = launch(k, "keel_test_dynamic_shared_index", {1, 1, 1}, {64, 1, 1}, 100 * sizeof(float), options(),
                      out.data, 100);
    expect_error(r, KEEL_EMU_ERROR_MEMORY_FAULT,
                 {"thread (7,0,0)", "dynamic shared memory out of bounds", "at offset 400", "400-byte dynamic shared"});
}

void fault_among_many_blocks() {
    Kernels k("errors");
    const int n = 1000;
    Buffer<float> p(n);
    Result r = launch(k, "keel_test_write_global", {64, 1, 1}, {128, 1, 1}, 0, options(2), p.data, n + 3, 37, 100);
    expect_error(r, KEEL_EMU_ERROR_MEMORY_FAULT, {"block (37,0,0), thread (100,0,0)", "at offset 4012 of the 4000-byte"});
}

void assert_trap() {
    Kernels k("errors");
    Buffer<int> values(64);
    for (int i = 0; i < 64; ++i) values[i] = random_int(0, 100);
    values[45] = -1;
    Result r = launch(k, "keel_test_assert", {1, 1, 1}, {64, 1, 1}, 0, options(), values.data);
    expect_error(r, KEEL_EMU_ERROR_TRAP, {"thread (45,0,0)", "assert(values[threadIdx.x] >= 0) failed", "errors.cu:"});
}

void stack_overflow() {
    Kernels k("errors");
    Buffer<int> out(32);
    out.poison();
    launch_ok(k, "keel_test_recursion", {1, 1, 1}, {32, 1, 1}, 0, options(), out.data, 20);  // fits in 64 KiB
    CHECK(out[0] == 210);
    Result r = launch(k, "keel_test_recursion", {1, 1, 1}, {32, 1, 1}, 0, options(), out.data, 1000);
    expect_error(r, KEEL_EMU_ERROR_MEMORY_FAULT, {"thread (0,0,0)", "stack overflow", "64 KiB", "fiber_stack_bytes"});
    launch_ok(k, "keel_test_recursion", {1, 1, 1}, {32, 1, 1}, 0, options(0, true, 4 << 20), out.data, 1000);
    int expected = 0;  // deep(n) adds each frame's char-sized n
    for (int i = 1; i <= 1000; ++i) expected += static_cast<signed char>(i);
    CHECK(out[31] == expected);  // ran to completion with a 4 MiB stack
    // A single frame larger than the stack: -fstack-clash-protection probes it page by page, so the guard
    // page is hit instead of jumped over.
    r = launch(k, "keel_test_big_frame", {1, 1, 1}, {4, 1, 1}, 0, options(), out.data, 7);
    expect_error(r, KEEL_EMU_ERROR_MEMORY_FAULT, {"thread (0,0,0)", "stack overflow"});
}

void division_by_zero() {
    Kernels k("errors");
    Buffer<int> out(8);
    Result r = launch(k, "keel_test_divide", {1, 1, 1}, {8, 1, 1}, 0, options(), out.data, 7, 0);
    expect_error(r, KEEL_EMU_ERROR_ARITHMETIC, {"thread (0,0,0)", "integer division by zero"});
}

// Launches from several host threads at once (as .NET may issue them) are serialized and all correct,
// including error launches interleaved with good ones.
void concurrent_host_threads() {
    Kernels barrier("barrier"), errors("errors");
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int h = 0; h < 4; ++h)
        threads.emplace_back([&, h] {
            const unsigned n = 256 * 3;
            Buffer<float> in(n), out(n);
            for (unsigned i = 0; i < n; ++i) in[i] = static_cast<float>(h * 10000 + i);
            for (int round = 0; round < 50; ++round) {
                out.poison();
                Result r = launch(barrier, "keel_test_reverse", {3, 1, 1}, {256, 1, 1}, 0, options(2), in.data, out.data);
                if (r.status != KEEL_EMU_OK) ++failures;
                for (unsigned i = 0; i < n; ++i)
                    if (out[i] != in[i / 256 * 256 + 255 - i % 256]) ++failures;
                if (h == 0 && round % 10 == 0) {
                    Buffer<float> small(4);
                    Result e = launch(errors, "keel_test_write_global", {1, 1, 1}, {8, 1, 1}, 0, options(), small.data, 4,
                                      0, 1);
                    if (e.status != KEEL_EMU_ERROR_MEMORY_FAULT) ++failures;
                }
            }
        });
    for (auto& t : threads) t.join();
    CHECK(failures.load() == 0);
}

// A SIGSEGV outside any launch still reaches the handler installed before the runtime's.
sigjmp_buf foreign_jump;
volatile sig_atomic_t foreign_faults = 0;
void foreign_handler(int, siginfo_t*, void*) {
    ++foreign_faults;
    siglongjmp(foreign_jump, 1);
}

void foreign_fault_chains() {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = &foreign_handler;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    CHECK(sigaction(SIGSEGV, &action, nullptr) == 0);
    // The first launch installs the runtime's handlers on top of ours; an error launch exercises them.
    oob_global();
    void* page = mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(page != MAP_FAILED);
    if (sigsetjmp(foreign_jump, 1) == 0) {
        *static_cast<volatile int*>(page) = 1;
        fail("the write to a PROT_NONE page did not fault");
    }
    CHECK(foreign_faults == 1);
    munmap(page, 4096);
    oob_global();  // and the runtime still handles its own
}


// ------------------------------------------------------------------------------------------------------
// Checking modes (README.md "Checking modes"): each planted bug reported, each correct twin passing.

constexpr uint32_t kAllChecks = KEEL_EMU_CHECKS_ALL;

void checks_need_instrumentation() {
    Kernels plain("checks", false);
    Buffer<float> out(64);
    Result r = launch(plain, "keel_test_missing_syncthreads", {1, 1, 1}, {64, 1, 1}, 0, checked(KEEL_EMU_CHECK_RACE),
                      out.data, 1);
    expect_error(r, KEEL_EMU_ERROR_INVALID_LAUNCH, {"keel_test_missing_syncthreads", "-fsanitize=thread"});
    // ORDER and ASYNC need no instrumentation.
    launch_ok(plain, "keel_test_missing_syncthreads", {1, 1, 1}, {64, 1, 1}, 0,
              checked(KEEL_EMU_CHECK_ORDER | KEEL_EMU_CHECK_ASYNC), out.data, 1);
}

void race_missing_syncthreads() {
    Kernels k("checks", true);
    Buffer<float> out(64);
    for (uint64_t seed = 1; seed <= 4; ++seed) {
        Result r = launch(k, "keel_test_missing_syncthreads", {1, 1, 1}, {64, 1, 1}, 0,
                          checked(KEEL_EMU_CHECK_RACE | KEEL_EMU_CHECK_ORDER, 1, seed), out.data, 0);
        expect_error(r, KEEL_EMU_ERROR_RACE,
                     {"keel_test_missing_syncthreads", "shared-memory race on static shared memory, offset",
                      "checks.cu:7", "checks.cu:9", "separate them with __sync"});
    }
    out.poison();
    launch_ok(k, "keel_test_missing_syncthreads", {2, 1, 1}, {64, 1, 1}, 0, checked(kAllChecks, 2), out.data, 1);
    for (unsigned t = 0; t < 64; ++t) CHECK(out[t] == static_cast<float>((t + 1) % 64));
}

void race_inside_warp() {
    Kernels k("checks", true);
    Buffer<float> out(32);
    Result r = launch(k, "keel_test_warp_exchange", {1, 1, 1}, {32, 1, 1}, 0, checked(KEEL_EMU_CHECK_RACE), out.data, 0);
    expect_error(r, KEEL_EMU_ERROR_RACE, {"same warp with no __syncwarp", "checks.cu:15", "checks.cu:17"});
    out.poison();
    launch_ok(k, "keel_test_warp_exchange", {1, 1, 1}, {32, 1, 1}, 0, checked(kAllChecks), out.data, 1);
    for (unsigned t = 0; t < 32; ++t) CHECK(out[t] == static_cast<float>(t ^ 1));
    // Shared atomics of many warps do not race with one another.
    Buffer<int> count(1);
    launch_ok(k, "keel_test_shared_atomics", {1, 1, 1}, {256, 1, 1}, 0, checked(kAllChecks), count.data);
    CHECK(count[0] == 256);
}

void cp_async_timing() {
    Kernels k("checks", true), plain("checks", false);
    Buffer<float> src(256), out(64);
    for (unsigned i = 0; i < 256; ++i) src[i] = static_cast<float>(i);
    Result r = launch(k, "keel_test_cp_async_timing", {1, 1, 1}, {64, 1, 1}, 0, checked(KEEL_EMU_CHECK_RACE), src.data,
                      out.data, 1);
    expect_error(r, KEEL_EMU_ERROR_RACE, {"reads static shared memory", "checks.cu:36", "while a cp.async of the same thread",
                                          "cp_async_16 (", "checks.cu:33", "wait_group"});
    // Without race detection the early read sees the poison, not the old contents or the data.
    out.poison();
    for (unsigned i = 0; i < 64; ++i) out[i] = 1.0f;
    launch_ok(plain, "keel_test_cp_async_timing", {1, 1, 1}, {64, 1, 1}, 0, checked(KEEL_EMU_CHECK_ASYNC), src.data,
              out.data, 1);
    for (unsigned t = 0; t < 64; ++t) CHECK(isnan(out[t]));
    launch_ok(k, "keel_test_cp_async_timing", {1, 1, 1}, {64, 1, 1}, 0, checked(kAllChecks), src.data, out.data, 0);
    for (unsigned t = 0; t < 64; ++t) CHECK(out[t] == static_cast<float>(t * 4));
    // Waiting for one's own copy is not enough to read another thread's: that needs a barrier.
    r = launch(k, "keel_test_cp_async_no_barrier", {1, 1, 1}, {64, 1, 1}, 0, checked(KEEL_EMU_CHECK_RACE), src.data,
               out.data, 0);
    expect_error(r, KEEL_EMU_ERROR_RACE, {"shared-memory race", "checks.cu:43", "checks.cu:47"});
    launch_ok(k, "keel_test_cp_async_no_barrier", {1, 1, 1}, {64, 1, 1}, 0, checked(kAllChecks), src.data, out.data, 1);
    for (unsigned t = 0; t < 64; ++t) CHECK(out[t] == static_cast<float>((t + 32) % 64 * 4));
}

void uninitialized_shared() {
    Kernels k("checks", true);
    Buffer<float> out(64);
    Result r = launch(k, "keel_test_uninitialized_shared", {1, 1, 1}, {64, 1, 1}, 0, checked(KEEL_EMU_CHECK_INIT),
                      out.data, 0);
    expect_error(r, KEEL_EMU_ERROR_UNINITIALIZED,
                 {"keel_test_uninitialized_shared", "reads 4 bytes of static shared memory", "checks.cu:55",
                  "no thread of this block has written"});
    launch_ok(k, "keel_test_uninitialized_shared", {3, 1, 1}, {64, 1, 1}, 0, checked(kAllChecks), out.data, 1);
    for (unsigned t = 0; t < 64; ++t) CHECK(out[t] == 5.0f);
}

void uninitialized_global() {
    Kernels k("checks", true);
    const unsigned n = 256;
    auto* in = static_cast<float*>(keel_emu_alloc_flags(n * 4, KEEL_EMU_ALLOC_GUARDED | KEEL_EMU_ALLOC_TRACK_INIT));
    auto* out = static_cast<float*>(
        keel_emu_alloc_flags(n * 4, KEEL_EMU_ALLOC_GUARDED | KEEL_EMU_ALLOC_POISON | KEEL_EMU_ALLOC_TRACK_INIT));
    CHECK(in != nullptr && out != nullptr);
    CHECK(isnan(out[0]) && isnan(out[n - 1]));  // poisoned, not zeroed
    for (unsigned i = 0; i < n; ++i) in[i] = 1.0f;
    keel_emu_mark_written(in, n * 4);
    Result r = launch(k, "keel_test_accumulate", {2, 1, 1}, {128, 1, 1}, 0, checked(KEEL_EMU_CHECK_INIT, 1), in, out);
    expect_error(r, KEEL_EMU_ERROR_UNINITIALIZED,
                 {"keel_test_accumulate", "reads 4 bytes of global memory", "checks.cu:61", "1024-byte allocation",
                  "never written"});
    // Written by the host, or by a kernel, it may be read.
    for (unsigned i = 0; i < n; ++i) out[i] = 2.0f;
    keel_emu_mark_written(out, n * 4);
    launch_ok(k, "keel_test_accumulate", {2, 1, 1}, {128, 1, 1}, 0, checked(kAllChecks), in, out);
    for (unsigned i = 0; i < n; ++i) CHECK(out[i] == 3.0f);
    keel_emu_free(in);
    keel_emu_free(out);
}

std::vector<int> start_order(const Kernels& k, unsigned blocks, uint32_t checks, uint64_t seed) {
    Buffer<int> counter(1), out(blocks);
    counter[0] = 0;
    launch_ok(k, "keel_test_block_start_order", {blocks, 1, 1}, {32, 1, 1}, 0, checked(checks, 1, seed), counter.data,
              out.data);
    return std::vector<int>(out.data, out.data + blocks);
}

void block_order() {
    Kernels k("checks", false);
    const unsigned blocks = 100;
    std::vector<int> identity(blocks);
    std::iota(identity.begin(), identity.end(), 0);
    CHECK(start_order(k, blocks, 0, 1) == identity);
    const std::vector<int> a = start_order(k, blocks, KEEL_EMU_CHECK_ORDER, 1), b = start_order(k, blocks, KEEL_EMU_CHECK_ORDER, 2);
    for (const auto& order : {a, b}) {
        std::vector<int> sorted = order;
        std::sort(sorted.begin(), sorted.end());
        CHECK(sorted == identity);  // a permutation
        CHECK(order != identity);
    }
    CHECK(a != b);
    CHECK(start_order(k, blocks, KEEL_EMU_CHECK_ORDER, 1) == a);  // the seed decides it
    // Grids of every size stay permutations (the Feistel domain is rounded up to a power of four).
    for (unsigned n : {1u, 2u, 3u, 17u, 1000u}) {
        std::vector<int> order = start_order(k, n, KEEL_EMU_CHECK_ORDER, n);
        std::sort(order.begin(), order.end());
        for (unsigned i = 0; i < n; ++i) CHECK(order[i] == static_cast<int>(i));
    }
}

void thread_order() {
    Kernels k("checks", false);
    const unsigned threads = 128;
    Buffer<int> out(2 * threads);
    std::vector<int> previous;
    for (uint64_t seed = 1; seed <= 3; ++seed) {
        launch_ok(k, "keel_test_thread_start_order", {1, 1, 1}, {threads, 1, 1}, 0, checked(KEEL_EMU_CHECK_ORDER, 1, seed),
                  out.data);
        std::vector<int> order(out.data, out.data + 2 * threads);
        for (int pass = 0; pass < 2; ++pass) {
            bool in_order = true;
            for (unsigned w = 0; w < threads / 32; ++w) {
                // A warp's lanes run one after another (positions form a run of 32), in a shuffled order.
                int low = 1 << 30, high = -1;
                for (unsigned l = 0; l < 32; ++l) {
                    const int position = order[pass * threads + w * 32 + l];
                    low = std::min(low, position);
                    high = std::max(high, position);
                    if (position != static_cast<int>(w * 32 + l)) in_order = false;
                }
                CHECK(high - low == 31 && low % 32 == 0);
            }
            CHECK(!in_order);
        }
        CHECK(order != previous);
        previous = order;
    }
}

void spin_on_block_order() {
    Kernels k("checks", true);
    const unsigned blocks = 16;
    Buffer<int> flags(blocks), out(blocks), ticket(1);
    // In index order on one worker the chain happens to complete...
    for (unsigned i = 0; i < blocks; ++i) flags[i] = 0;
    launch_ok(k, "keel_test_chain_by_index", {blocks, 1, 1}, {64, 1, 1}, 0, checked(KEEL_EMU_CHECK_SPIN, 1), flags.data,
              out.data);
    // ...in any other order it cannot, and the spin is reported instead of hanging, on one worker or two.
    for (int workers : {1, 2}) {
        for (unsigned i = 0; i < blocks; ++i) flags[i] = 0;
        Result r = launch(k, "keel_test_chain_by_index", {blocks, 1, 1}, {64, 1, 1}, 0,
                          checked(KEEL_EMU_CHECK_SPIN | KEEL_EMU_CHECK_ORDER, workers, 5), flags.data, out.data);
        expect_error(r, KEEL_EMU_ERROR_SPIN, {"keel_test_chain_by_index", "spins at checks.cu:68", "reading global memory",
                                              "which stays 0x0", "atomic ticket"});
    }
    // Ordered by a ticket, it completes under any order.
    for (uint64_t seed = 1; seed <= 8; ++seed) {
        for (unsigned i = 0; i < blocks; ++i) flags[i] = out[i] = 0;
        ticket[0] = 0;
        launch_ok(k, "keel_test_chain_by_ticket", {blocks, 1, 1}, {64, 1, 1}, 0, checked(kAllChecks & ~KEEL_EMU_CHECK_INIT, 2, seed),
                  flags.data, ticket.data, out.data);
        for (unsigned i = 0; i < blocks; ++i) CHECK(out[i] == static_cast<int>(i) && flags[i] == 1);
    }
    // A thread may wait for another warp of its block: the waiting thread yields instead of hanging.
    Buffer<int> done(1);
    done[0] = 0;
    launch_ok(k, "keel_test_spin_in_block", {1, 1, 1}, {64, 1, 1}, 0, checked(kAllChecks), done.data);
    CHECK(done[0] == 1);
}

void misaligned_access() {
    Kernels plain("checks", false), k("checks", true);
    Buffer<float> in(64), out(32);
    for (unsigned i = 0; i < 64; ++i) in[i] = 1.0f;
    Result r = launch(plain, "keel_test_misaligned_vector", {1, 1, 1}, {32, 1, 1}, 0, options(), in.data, out.data, 2);
    expect_error(r, KEEL_EMU_ERROR_MISALIGNED, {"keel_test_misaligned_vector", "16-byte vector access at address",
                                                 "not 16-byte aligned"});
    launch_ok(plain, "keel_test_misaligned_vector", {1, 1, 1}, {32, 1, 1}, 0, options(), in.data, out.data, 4);
    CHECK(out[0] == 4.0f);
    Buffer<unsigned short> halves(64);
    Buffer<unsigned> words(32);
    r = launch(k, "keel_test_misaligned_word", {1, 1, 1}, {32, 1, 1}, 0, checked(KEEL_EMU_CHECK_RACE), halves.data,
               words.data, 1);
    expect_error(r, KEEL_EMU_ERROR_MISALIGNED, {"4-byte access at address", "checks.cu:132", "not 4-byte aligned"});
    launch_ok(k, "keel_test_misaligned_word", {1, 1, 1}, {32, 1, 1}, 0, checked(KEEL_EMU_CHECK_RACE), halves.data,
              words.data, 2);
}

}  // namespace

int main(int argc, char** argv) {
    const std::map<std::string, void (*)()> tests = {
        {"indexing_3d", indexing_3d},
        {"barrier_reverse", barrier_reverse},
        {"barrier_scan_and_votes", barrier_scan_and_votes},
        {"shuffles", shuffles},
        {"votes", votes},
        {"math_functions", math_functions},
        {"activemask_after_return", activemask_after_return},
        {"atomics_many_workers", atomics_many_workers},
        {"dynamic_shared", dynamic_shared},
        {"mma_fragments", mma_fragments},
        {"mma_through_ldmatrix", mma_through_ldmatrix},
        {"ldmatrix", ldmatrix},
        {"cp_async", cp_async},
        {"signatures", signatures},
        {"launch_validation", launch_validation},
        {"deadlock_early_return", deadlock_early_return},
        {"barrier_mismatch", barrier_mismatch},
        {"mask_names_exited_lanes", mask_names_exited_lanes},
        {"mask_mismatch", mask_mismatch},
        {"mask_without_self", mask_without_self},
        {"oob_global", oob_global},
        {"oob_static_shared", oob_static_shared},
        {"oob_local", oob_local},
        {"oob_dynamic_shared", oob_dynamic_shared},
        {"fault_among_many_blocks", fault_among_many_blocks},
        {"assert_trap", assert_trap},
        {"stack_overflow", stack_overflow},
        {"division_by_zero", division_by_zero},
        {"foreign_fault_chains", foreign_fault_chains},
        {"concurrent_host_threads", concurrent_host_threads},
        {"checks_need_instrumentation", checks_need_instrumentation},
        {"race_missing_syncthreads", race_missing_syncthreads},
        {"race_inside_warp", race_inside_warp},
        {"cp_async_timing", cp_async_timing},
        {"uninitialized_shared", uninitialized_shared},
        {"uninitialized_global", uninitialized_global},
        {"block_order", block_order},
        {"thread_order", thread_order},
        {"spin_on_block_order", spin_on_block_order},
        {"misaligned_access", misaligned_access},
    };
    std::vector<std::string> names;
    if (argc > 1)
        names.assign(argv + 1, argv + argc);
    else
        for (const auto& entry : tests) names.push_back(entry.first);
    for (const std::string& name : names) {
        auto it = tests.find(name);
        if (it == tests.end()) fail("no test named " + name);
        printf("== %s\n", name.c_str());
        it->second();
        printf("ok %s\n", name.c_str());
    }
    return 0;
}
