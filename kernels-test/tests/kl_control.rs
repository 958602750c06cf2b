//! KL-control kernel (β warm-up, free bits, balancing, gradient seeds) against
//! the CPU reference over several schedules and steps.

#[test]
fn kl_control_matches_reference() {
    kernels_test::assert_family_passes("kl_control");
}
