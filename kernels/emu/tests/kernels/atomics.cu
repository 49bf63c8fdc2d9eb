// Atomics from many blocks at once. Each thread adds ITERATIONS times, so the workers really contend.
#define ITERATIONS 8
extern "C" __global__ void keel_test_atomics(int* i, unsigned* u, unsigned long long* ull, float* f, double* d,
                                             int* imax, int* imin, unsigned* umax, unsigned* umin, int* cas_counter,
                                             unsigned* exchange_slot, unsigned* exchanged, float* fexchange) {
    const unsigned id = blockIdx.x * blockDim.x + threadIdx.x;
    for (int k = 0; k < ITERATIONS; ++k) {
        atomicAdd(i, 1);
        atomicAdd(u, 3u);
        atomicAdd(ull, 1ull << 33);
        atomicAdd(f, 1.0f);
        atomicAdd(d, 0.5);
        int old = *cas_counter, assumed;
        do {
            assumed = old;
            old = atomicCAS(cas_counter, assumed, assumed + 1);
        } while (old != assumed);
    }
    atomicMax(imax, static_cast<int>(id) - 5000);
    atomicMin(imin, static_cast<int>(id) - 5000);
    atomicMax(umax, id * 7u);
    atomicMin(umin, id + 100u);
    exchanged[id] = atomicExch(exchange_slot, id);
    atomicExch(fexchange, 2.5f);
}
