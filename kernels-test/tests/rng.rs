//! Philox bits, uniforms and normals: GPU identical to the CPU reference.

#[test]
fn rng_matches_reference() {
    kernels_test::assert_family_passes("rng");
}
