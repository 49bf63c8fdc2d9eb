// Ballot, any and all over the full warp and over two disjoint half-warp masks at once; __activemask.
extern "C" __global__ void keel_test_vote(const int* predicate, unsigned* out) {
    const unsigned t = threadIdx.x, lane = t % 32;
    const int p = predicate[t];
    unsigned* o = out + 7 * t;
    o[0] = __ballot_sync(0xffffffffu, p);
    o[1] = static_cast<unsigned>(__any_sync(0xffffffffu, p));
    o[2] = static_cast<unsigned>(__all_sync(0xffffffffu, p));
    const unsigned half = lane < 16 ? 0x0000ffffu : 0xffff0000u;
    o[3] = __ballot_sync(half, p);
    o[4] = static_cast<unsigned>(__any_sync(half, p));
    o[5] = static_cast<unsigned>(__all_sync(half, p));
    __syncwarp();
    o[6] = __activemask();
}

// Lanes at or past `active` return first; the rest reduce over the converged set __activemask() gives.
extern "C" __global__ void keel_test_activemask_after_return(const float* in, float* sums, unsigned* masks, int active) {
    const unsigned t = threadIdx.x;
    if (static_cast<int>(t % 32) >= active) return;
    const unsigned mask = __activemask();
    float v = in[t];
    for (int offset = 16; offset > 0; offset /= 2) {
        const float other = __shfl_down_sync(mask, v, offset);
        if (static_cast<int>(t % 32) + offset < active) v += other;
    }
    masks[t] = mask;
    sums[t] = v;
}
