// rope.cu — rotary position embedding, Llama "rotate half", on x [B, S, H, D] bf16 (D even, half = D/2).
//
//   freq_i = theta^(-2i/D),  a = pos * freq_i,  for i < half:
//   out[i]        = x[i] cos a - x[i + half] sin a
//   out[i + half] = x[i + half] cos a + x[i] sin a
// Backward is the rotation by -a (sign = -1). Both may run in place: each thread reads its pairs before writing them.
//
// keel_rope_table: table[pos][i] = (cos a, sin a) as fp32, the angle and both functions computed in fp64 like the
//   reference, so the rotation stays within bf16 rounding at position 16k and beyond (an fp32 pos * freq is already
//   off by ~1e-3 rad there). Built once per (D, theta) and grown with the longest sequence seen; positions * half
//   threads, 1-D blocks of 256.
// keel_rope_rotate: one thread per WIDTH pairs of one (b, s, h) row: WIDTH = 8 (two 16-byte bf16 loads, four
//   16-byte table loads) when half is a multiple of 8 and the tensors are 16-byte aligned, else 1.
//   Bytes: 4 per element read and written (8 per pair) plus the table, 8 bytes per pair but shared by the B H rows
//   of a position (L2 resident). FLOPs: 6 per pair. Bandwidth bound. 1-D blocks of 256 threads, grid-stride.
// The sequence of a row is (row / heads) % seq, positions starting at 0.
//
// Why a separate pass rather than a rotation inside attention's loads: the device ops keep RoPE apart from attention
// (the model rotates q and k in place after the QKV GEMM), and inside attention the rotation would be redone for
// every reread of a tile (k once per forward query block, q and k once per backward key block) with table reads in
// the tensor-core loop. This pass moves 8 bytes per q or k element once: for hidden 2048 and 8 kv heads, about 12 KB
// a token, ~70 us for 16k tokens at 3 TB/s, which is a few percent of the forward at S >= 4k but comparable to it at
// S = 512. `keel bench attention` times it beside the attention passes (pass "rope") so the choice can be checked on
// the GPU; fusing it into the QKV GEMM's epilogue would remove it, which cuBLASLt does not offer.
#include "common.cuh"

extern "C" __global__ void keel_rope_table(float* __restrict__ table, int positions, int half, float theta) {
    const i64 id = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (id >= (i64)positions * half) return;
    const int position = (int)(id / half), i = (int)(id % half);
    const double angle = (double)position * pow((double)theta, -2.0 * i / (2.0 * half));
    table[2 * id] = (float)cos(angle);
    table[2 * id + 1] = (float)sin(angle);
}

template <int WIDTH>
__device__ __forceinline__ void rope_rotate(const bf16* x, bf16* out, const float* __restrict__ table, i64 rows, int seq,
                                            int heads, int half, float sign) {
    const int per_row = half / WIDTH;
    const i64 items = rows * per_row, stride = (i64)gridDim.x * blockDim.x;
    for (i64 id = (i64)blockIdx.x * blockDim.x + threadIdx.x; id < items; id += stride) {
        const i64 row = id / per_row;
        const int i0 = (int)(id % per_row) * WIDTH, position = (int)(row / heads % seq);
        const i64 at = row * 2 * half + i0;
        const float* cs = table + 2 * ((i64)position * half + i0);
        float x0[WIDTH], x1[WIDTH], c[WIDTH], s[WIDTH];
        if constexpr (WIDTH == 8) {
            const Packed128<bf16> lo = load128(x + at), hi = load128(x + at + half);
            for (int j = 0; j < 4; j++) {
                const Packed128<float> pair = load128(cs + 4 * j);  // (cos, sin) of pairs 2j and 2j + 1
                c[2 * j] = pair.v[0];
                s[2 * j] = pair.v[1];
                c[2 * j + 1] = pair.v[2];
                s[2 * j + 1] = pair.v[3];
            }
            for (int j = 0; j < 8; j++) {
                x0[j] = bf16_to_float(lo.v[j]);
                x1[j] = bf16_to_float(hi.v[j]);
            }
        } else {
            for (int j = 0; j < WIDTH; j++) {
                x0[j] = bf16_to_float(x[at + j]);
                x1[j] = bf16_to_float(x[at + half + j]);
                c[j] = cs[2 * j];
                s[j] = cs[2 * j + 1];
            }
        }
        float y0[WIDTH], y1[WIDTH];
        for (int j = 0; j < WIDTH; j++) {
            const float sn = sign * s[j];
            y0[j] = x0[j] * c[j] - x1[j] * sn;
            y1[j] = x1[j] * c[j] + x0[j] * sn;
        }
        if constexpr (WIDTH == 8) {
            Packed128<bf16> lo, hi;
            for (int j = 0; j < 8; j++) {
                lo.v[j] = float_to_bf16(y0[j]);
                hi.v[j] = float_to_bf16(y1[j]);
            }
            store128(out + at, lo);
            store128(out + at + half, hi);
        } else {
            for (int j = 0; j < WIDTH; j++) {
                out[at + j] = float_to_bf16(y0[j]);
                out[at + half + j] = float_to_bf16(y1[j]);
            }
        }
    }
}

// x and out may be the same tensor (no __restrict__ on them). vector: 1 for the 8-pair path, 0 for one pair per thread.
extern "C" __global__ void keel_rope_rotate(const bf16* x, bf16* out, const float* __restrict__ table, i64 rows, int seq,
                                            int heads, int half, float sign, int vector) {
    if (vector) rope_rotate<8>(x, out, table, rows, seq, heads, half, sign);
    else rope_rotate<1>(x, out, table, rows, seq, heads, half, sign);
}
