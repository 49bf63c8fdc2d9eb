// Every thread of a 3-D grid of 3-D blocks records its built-in variables.
extern "C" __global__ void keel_test_indexing(unsigned* out) {
    const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const unsigned threads = blockDim.x * blockDim.y * blockDim.z;
    const unsigned thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    unsigned* o = out + 8 * (block * threads + thread);
    o[0] = threadIdx.x;
    o[1] = threadIdx.y;
    o[2] = threadIdx.z;
    o[3] = blockIdx.x;
    o[4] = blockIdx.y;
    o[5] = blockIdx.z;
    o[6] = blockDim.x | (blockDim.y << 10) | (blockDim.z << 20);
    o[7] = gridDim.x | (gridDim.y << 10) | (gridDim.z << 20);
}
