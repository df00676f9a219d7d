// The sum of one f32 per invocation over the workgroup, by a tree in shared memory: the
// same order every run, so the same bits. Call in uniform control flow.

var<workgroup> shared_sums: array<f32, WORKGROUP_SIZE>;

fn workgroup_sum(local: u32, own: f32) -> f32 {
    shared_sums[local] = own;
    workgroupBarrier();
    for (var width = WORKGROUP_SIZE / 2u; width > 0u; width /= 2u) {
        if (local < width) {
            shared_sums[local] += shared_sums[local + width];
        }
        workgroupBarrier();
    }
    let total = shared_sums[0];
    // Nobody overwrites the tree's root before everyone has read it.
    workgroupBarrier();
    return total;
}
