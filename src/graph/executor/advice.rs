//! What to change when a tensor is too large for the adapter's buffers: a
//! smaller batch shrinks activations, inputs and constants, never the weights,
//! which grow with the config's widths.

use crate::graph::ir::{Graph, Role};

/// The remedy for a tensor of `role` over a buffer or binding limit.
pub(crate) fn shrink(role: Role) -> &'static str {
    match role {
        Role::Param | Role::ParamGrad => {
            "the weights do not shrink with the batch: lower the config's width (or custom_width_str), \
             bottleneck_multiple or zdim (ladder_hidden or ladder_latent for the MLP Ladder VAE)"
        }
        Role::Input | Role::Constant | Role::Activation => {
            "use a smaller batch (--batch), or lower the config's image_size or width"
        }
    }
}

/// The message for `what` (tensors of `role`) needing a `bytes`-byte buffer
/// over the `max` the adapter allows: the largest such tensor, and what to lower.
pub(crate) fn too_large_buffer(g: &Graph, what: &str, role: Role, bytes: usize, max: usize) -> String {
    let largest = g.tensors.iter().filter(|t| t.role == role).max_by_key(|t| t.numel());
    let hint = largest.map_or(String::new(), |t| format!(" (the largest is {} {:?})", t.name, t.shape));
    format!(
        "the {what} need a {bytes}-byte buffer, over this adapter's {max}-byte max_buffer_size{hint}; {}",
        shrink(role)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_name_the_widths_and_activations_the_batch() {
        for role in [Role::Param, Role::ParamGrad] {
            let advice = shrink(role);
            assert!(
                advice.contains("bottleneck_multiple") && advice.contains("width"),
                "{advice}"
            );
            assert!(advice.contains("do not shrink with the batch"), "{advice}");
        }
        for role in [Role::Input, Role::Constant, Role::Activation] {
            assert!(shrink(role).contains("smaller batch"), "{role:?}");
        }
    }

    #[test]
    fn an_oversized_weights_buffer_names_the_largest_weight_and_the_widths() {
        let mut g = Graph::default();
        g.tensor("x", vec![64, 32, 32, 512], Role::Input);
        g.tensor("small.weight", vec![8, 8], Role::Param);
        g.tensor("big.weight", vec![4096, 4096], Role::Param);
        let err = too_large_buffer(&g, "weights", Role::Param, 1 << 26, 1 << 20);
        assert!(err.contains("the largest is big.weight [4096, 4096]"), "{err}");
        assert!(err.contains("width") && !err.contains("smaller batch"), "{err}");
        let err = too_large_buffer(&g, "inputs", Role::Input, 1 << 26, 1 << 20);
        assert!(
            err.contains("x [64, 32, 32, 512]") && err.contains("smaller batch"),
            "{err}"
        );
    }
}
