// Bernoulli likelihood on logits (binarized data), shared by the loss,
// loss+gradient and sampling kernels. src/kernels/bernoulli/reference.rs is the f64 oracle.

// Elements of one image a loss workgroup sums (CHUNK in src/kernels/bernoulli/mod.rs).
const BERNOULLI_CHUNK: u32 = 1024u;

struct BernoulliParams {
    per_image: u32, // H*W*C
    images: u32,
    chunks: u32,    // workgroups per image = ceil(per_image / BERNOULLI_CHUNK)
}

// log(1 + t) for t in [0, 1]: 2 atanh(s), s = t / (2 + t) <= 1/3 (~1e-10 relative),
// independent of the built-in log's precision near 1.
fn bernoulli_log1p(t: f32) -> f32 {
    let s = t / (2.0 + t);
    let s2 = s * s;
    let series = 1.0 + s2 * (0.33333333 + s2 * (0.2 + s2 * (0.14285714 + s2 * (0.11111111 + s2 * (0.09090909
        + s2 * (0.07692308 + s2 * (0.06666667 + s2 * 0.05882353)))))));
    return 2.0 * s * series;
}

// -[t log sigmoid(l) + (1 - t) log(1 - sigmoid(l))] = softplus(l) - t l
//   = max(l, 0) - t l + log(1 + exp(-|l|)).
fn bernoulli_nll(l: f32, t: f32) -> f32 {
    return max(l, 0.0) - t * l + bernoulli_log1p(exp(-abs(l)));
}

// d nll / dl = sigmoid(l) - t = (1 - t) sigmoid(l) - t sigmoid(-l): exact for t in
// {0, 1} without the cancellation of sigmoid(l) - 1.
fn bernoulli_nll_grad(l: f32, t: f32) -> f32 {
    let e = exp(-abs(l));
    let r = 1.0 / (1.0 + e);
    let s_pos = select(e * r, r, l >= 0.0);
    let s_neg = select(r, e * r, l >= 0.0);
    return (1.0 - t) * s_pos - t * s_neg;
}

// sigmoid(l), relative-accurate on both tails.
fn bernoulli_sigmoid(l: f32) -> f32 {
    let e = exp(-abs(l));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), l >= 0.0);
}
