//! Broadcast kernels against the CPU reference (exact copies).

#[test]
fn broadcast_matches_reference() {
    kernels_test::assert_family_passes("broadcast");
}
