// The log_softmax normaliser shared by dmol_loss.wgsl and dmol_loss_grad.wgsl.
// Included after dmol_common.wgsl; reads the `l` binding and `p: DmolParams`
// that both kernels declare (WGSL module-scope names may be used before they
// are declared).

// log sum_k exp(logit_k) over the mixture logits starting at `base`.
fn logit_normaliser(base: u32) -> f32 {
    var top = l[base];
    var top_k = 0u;
    for (var k = 1u; k < p.mixtures; k++) {
        if (l[base + k] > top) {
            top = l[base + k];
            top_k = k;
        }
    }
    var rest = 0.0;
    for (var k = 0u; k < p.mixtures; k++) {
        if (k != top_k) {
            rest += exp(l[base + k] - top);
        }
    }
    return top + dmol_log1p_nonneg(rest);
}
