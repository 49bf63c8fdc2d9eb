// Kernels for the checking modes: planted bugs each mode must report, and their correct twins, which must pass.

// Each thread writes its element and reads its neighbour's with no barrier between: threads 31 and 32 (warps 0
// and 1) and 63 and 0 race.
extern "C" __global__ void keel_test_missing_syncthreads(float* out, int synchronized) {
    __shared__ float tile[64];
    tile[threadIdx.x] = (float)threadIdx.x;
    if (synchronized) __syncthreads();
    out[threadIdx.x] = tile[(threadIdx.x + 1) % 64];
}

// Lanes exchange through shared memory: without __syncwarp a race inside the warp, with it correct.
extern "C" __global__ void keel_test_warp_exchange(float* out, int synchronized) {
    __shared__ float tile[32];
    tile[threadIdx.x] = (float)threadIdx.x;
    if (synchronized) __syncwarp();
    out[threadIdx.x] = tile[threadIdx.x ^ 1];
}

// Every thread adds to one shared counter atomically; atomics do not race with each other.
extern "C" __global__ void keel_test_shared_atomics(int* out) {
    __shared__ int counter;
    if (threadIdx.x == 0) counter = 0;
    __syncthreads();
    atomicAdd(&counter, 1);
    __syncthreads();
    if (threadIdx.x == 0) *out = counter;
}

// Reads a cp.async destination before (early != 0) or after waiting for it.
extern "C" __global__ void keel_test_cp_async_timing(const float* src, float* out, int early) {
    __shared__ __align__(16) float stage[64 * 4];
    keel_emu::cp_async_16(&stage[threadIdx.x * 4], src + threadIdx.x * 4, 16);
    keel_emu::cp_async_commit();
    if (!early) keel_emu::cp_async_wait(0);
    out[threadIdx.x] = stage[threadIdx.x * 4];
    keel_emu::cp_async_wait(0);
}

// Waits for its own cp.async but reads another thread's destination with no barrier in between.
extern "C" __global__ void keel_test_cp_async_no_barrier(const float* src, float* out, int synchronized) {
    __shared__ __align__(16) float stage[64 * 4];
    keel_emu::cp_async_16(&stage[threadIdx.x * 4], src + threadIdx.x * 4, 16);
    keel_emu::cp_async_commit();
    keel_emu::cp_async_wait(0);
    if (synchronized) __syncthreads();
    out[threadIdx.x] = stage[((threadIdx.x + 32) % 64) * 4];
}

// Reads shared memory no thread wrote (written != 0: thread 0 writes it first).
extern "C" __global__ void keel_test_uninitialized_shared(float* out, int written) {
    __shared__ float value[2];
    if (written && threadIdx.x == 0) value[0] = 5.0f;
    __syncthreads();
    out[threadIdx.x] = value[0];
}

// Accumulates into its output as if device memory started at zero.
extern "C" __global__ void keel_test_accumulate(const float* in, float* out) {
    const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    out[i] += in[i];
}

// Link b of a chain: waits for link b - 1 to publish, writes out[b] = b, publishes.
__device__ void chain_link(int b, int* flags, int* out) {
    if (threadIdx.x != 0) return;
    if (b > 0)
        while (*reinterpret_cast<volatile int*>(&flags[b - 1]) == 0) {
        }
    out[b] = b;
    __threadfence();
    atomicExch(&flags[b], 1);
}

// Block b is link b, assuming blocks start in index order: hangs when they do not.
extern "C" __global__ void keel_test_chain_by_index(int* flags, int* out) { chain_link((int)blockIdx.x, flags, out); }

// The link is an atomic ticket taken at block start: a block waits only for blocks that started before it, so it
// never hangs, whatever the order.
extern "C" __global__ void keel_test_chain_by_ticket(int* flags, int* ticket, int* out) {
    __shared__ int mine;
    if (threadIdx.x == 0) mine = atomicAdd(ticket, 1);
    __syncthreads();
    chain_link(mine, flags, out);
}

// Records the order in which blocks start: out[blockIdx] = position.
extern "C" __global__ void keel_test_block_start_order(int* counter, int* out) {
    if (threadIdx.x == 0) out[blockIdx.x] = atomicAdd(counter, 1);
}

// Records the order in which the threads of a block first run: out[thread] = position.
extern "C" __global__ void keel_test_thread_start_order(int* out) {
    __shared__ int position;
    __shared__ int after_barrier;
    if (threadIdx.x == 0) position = 0;  // thread 0 may not run first, so this does not count
    __syncthreads();
    out[threadIdx.x] = atomicAdd(&position, 1);
    if (threadIdx.x == 0) after_barrier = 0;
    __syncthreads();
    out[blockDim.x + threadIdx.x] = atomicAdd(&after_barrier, 1);
}

// Thread 0 spins on a flag that thread 32 (another warp of the block) sets: legal on a GPU (warps run independently),
// and the emulator must let thread 32 run rather than hang.
extern "C" __global__ void keel_test_spin_in_block(int* out) {
    __shared__ int flag;
    if (threadIdx.x == 0) {
        flag = 0;
        __threadfence_block();
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        while (atomicAdd(&flag, 0) == 0) {
        }
        *out = 1;
    } else if (threadIdx.x == 32) {
        atomicExch(&flag, 1);
    }
}

// A 16-byte vector load at an address 8 bytes past a 16-byte boundary (offset != 0), and a 4-byte load at an odd
// 2-byte boundary (the instrumented build catches that one).
extern "C" __global__ void keel_test_misaligned_vector(const float* in, float* out, int offset) {
    const float* p = in + offset;
    keel_emu::check_aligned(p, 16);
    const float4 v = *reinterpret_cast<const float4*>(p);
    out[threadIdx.x] = v.x + v.y + v.z + v.w;
}

extern "C" __global__ void keel_test_misaligned_word(const unsigned short* in, unsigned* out, int offset) {
    out[threadIdx.x] = *reinterpret_cast<const unsigned*>(in + offset);
}
