// activations.cu — the FFN's elementwise activations: the SwiGLU gate and GELU (tanh approximation).
//
// Element type: -DELEMENT=bf16 (the GEMM operands of a GPU training step) or -DELEMENT=float; every tensor
// of a launch has that type, math is fp32 in registers. One vector = 16 bytes = V elements (V = 8 for bf16,
// 4 for fp32); pointers are 16-byte aligned (checked by the launchers).
//
// SwiGLU over gateUp [rows, 2F] (gate g in columns 0..F-1, up u in F..2F-1), F a multiple of 8:
//   keel_activations_swiglu_forward:   h = silu(g) * u,  silu(g) = g * s,  s = 1 / (1 + exp(-g))     h [rows, F]
//   keel_activations_swiglu_backward:  dg = dh * u * s * (1 + g * (1 - s)),  du = dh * silu(g)      into dGateUp [rows, 2F]
//   Nothing is saved: the backward recomputes s from gateUp, which it reads anyway.
//   Bytes per element of h (b = bytes per element): forward 3b (g, u read; h written), backward 5b (g, u, dh
//   read; dg, du written); bf16: 6 and 10. FLOPs: about 10 and 16 plus one exp, so bandwidth bound.
//   Launch: 1-D blocks of 256 threads, grid-stride over rows * F / V vectors; vector i is h's elements
//   [V i, V i + V) and lies in row r = i / (F / V), so its gate starts at gateUp[V i + r F] (one integer
//   division per 16 bytes of h) and its up F elements later; no vector straddles a row since V divides F.
//
// GELU, elementwise over n elements (any n), u = sqrt(2/pi) * (x + 0.044715 x^3), t = tanh(u):
//   keel_activations_gelu_forward:   y = 0.5 x (1 + t)                                              (y may be x)
//   keel_activations_gelu_backward:  dx = dy * (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2))
//                                    (dx may be dy)
//   Bytes per element: forward 2b, backward 3b. FLOPs: about 10 and 18 plus one tanh.
//   Launch: as cast.cu: 1-D blocks of 256 threads, one vector per thread per step in a grid-stride loop, the
//   last n % V elements one per thread. In place is allowed, so x/y and dy/dx are not __restrict__.
#include "common.cuh"

#ifndef ELEMENT
#error "activations.cu needs -DELEMENT=bf16 or -DELEMENT=float"
#endif
typedef ELEMENT elem;
typedef Packed128<elem> vec;
static constexpr int VEC = Packed128<elem>::size;  // elements per 16-byte vector

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

extern "C" __global__ void keel_activations_swiglu_forward(const elem* __restrict__ gate_up, elem* __restrict__ h,
                                                           i64 rows, int ffn) {
    const int row_vectors = ffn / VEC;
    const i64 vectors = rows * row_vectors;
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < vectors; i += stride) {
        const elem* gate = gate_up + VEC * i + (i / row_vectors) * ffn;
        const vec g = load128(gate), u = load128(gate + ffn);
        vec out;
        for (int j = 0; j < VEC; j++) {
            const float x = to_float(g.v[j]);
            out.v[j] = from_float<elem>(x * sigmoid(x) * to_float(u.v[j]));
        }
        store128(h + VEC * i, out);
    }
}

extern "C" __global__ void keel_activations_swiglu_backward(const elem* __restrict__ gate_up, const elem* __restrict__ dh,
                                                            elem* __restrict__ d_gate_up, i64 rows, int ffn) {
    const int row_vectors = ffn / VEC;
    const i64 vectors = rows * row_vectors;
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < vectors; i += stride) {
        const i64 offset = VEC * i + (i / row_vectors) * ffn;
        const vec g = load128(gate_up + offset), u = load128(gate_up + offset + ffn), grad = load128(dh + VEC * i);
        vec dg, du;
        for (int j = 0; j < VEC; j++) {
            const float x = to_float(g.v[j]), up = to_float(u.v[j]), d = to_float(grad.v[j]);
            const float s = sigmoid(x);
            dg.v[j] = from_float<elem>(d * up * s * (1.0f + x * (1.0f - s)));
            du.v[j] = from_float<elem>(d * x * s);
        }
        store128(d_gate_up + offset, dg);
        store128(d_gate_up + offset + ffn, du);
    }
}

static constexpr float GELU_SCALE = 0.7978845608028654f;  // sqrt(2/pi)
static constexpr float GELU_CUBIC = 0.044715f;

__device__ __forceinline__ float gelu(float x) {
    const float t = tanhf(GELU_SCALE * (x + GELU_CUBIC * x * x * x));
    return 0.5f * x * (1.0f + t);
}

__device__ __forceinline__ float gelu_derivative(float x) {
    const float t = tanhf(GELU_SCALE * (x + GELU_CUBIC * x * x * x));
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GELU_SCALE * (1.0f + 3.0f * GELU_CUBIC * x * x);
}

extern "C" __global__ void keel_activations_gelu_forward(const elem* x, elem* y, i64 n) {
    const i64 vectors = n / VEC;
    const i64 stride = (i64)gridDim.x * blockDim.x;
    const i64 first = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    for (i64 i = first; i < vectors; i += stride) {
        vec v = load128(x + VEC * i);
        for (int j = 0; j < VEC; j++) v.v[j] = from_float<elem>(gelu(to_float(v.v[j])));
        store128(y + VEC * i, v);
    }
    const i64 tail = VEC * vectors + first;
    if (tail < n) y[tail] = from_float<elem>(gelu(to_float(x[tail])));
}

extern "C" __global__ void keel_activations_gelu_backward(const elem* __restrict__ x, const elem* dy, elem* dx, i64 n) {
    const i64 vectors = n / VEC;
    const i64 stride = (i64)gridDim.x * blockDim.x;
    const i64 first = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    for (i64 i = first; i < vectors; i += stride) {
        const vec v = load128(x + VEC * i);
        vec d = load128(dy + VEC * i);
        for (int j = 0; j < VEC; j++) d.v[j] = from_float<elem>(to_float(d.v[j]) * gelu_derivative(to_float(v.v[j])));
        store128(dx + VEC * i, d);
    }
    const i64 tail = VEC * vectors + first;
    if (tail < n) dx[tail] = from_float<elem>(to_float(dy[tail]) * gelu_derivative(to_float(x[tail])));
}
