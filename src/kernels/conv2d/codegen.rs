//! WGSL generators for the tiled conv kernels.
//!
//! Why generated: on lavapipe (Mesa llvmpipe) every storage-buffer load is a
//! per-lane scalar loop (~45 cycles for one vec4 per 8 lanes), while an FMA is
//! half a cycle. Kernels must therefore reuse each loaded value dozens of times
//! from registers. Two tools do that here:
//! - lanes own *output channels*; the operand shared by all lanes (an input row
//!   segment) is loaded once, one pixel per lane, and handed to every lane with
//!   `subgroupBroadcast` (an in-register shuffle);
//! - the tile is straight-line code with every index constant, so the values
//!   stay in registers (or LLVM spill slots). WGSL loops over private arrays are
//!   not unrolled by the driver and run about 3x slower, hence the generator.
//!
//! Each generated kernel runs one subgroup of 8 lanes per workgroup (the adapter
//! must have subgroups of at least 8 lanes).

use std::fmt::Write;

/// Lanes of the one subgroup each generated kernel runs per workgroup (its
/// `@workgroup_size`); the adapter's subgroups must be at least this wide.
pub const LANES: u32 = 8;

/// What the forward tile writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Epilogue {
    /// `y = acc (+ bias) (+ residual)`.
    Store { bias: bool, residual: bool },
    /// `y = acc * gelu'(extra) (+ bias[i])`: dx of a conv whose input went
    /// through GELU; with `add`, another gradient of the same tensor (bound
    /// where the forward's bias is) is added on the way out; with `act`,
    /// `act = gelu(extra)` is written beside it (binding 6) for the weight
    /// gradient that follows, from the same `Phi(extra)`.
    GeluGrad { act: bool, add: bool },
}

/// Where a forward tile's input channels come from and its output channels go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sources {
    /// One input tensor `x`, one output `y`.
    One,
    /// A forward conv over `cat[x, x2]`: the channel loop runs over x's
    /// `cat_split` channels, then over x2's, in the order of the concatenation.
    CatInput,
    /// The dx of a conv over a cat: output channels below `cat_split` go to `y`
    /// (with `extra` and `bias` read at the same place), the rest to `y2`
    /// (with `extra2`, and `bias2` when `add2`: the second half's addend, or
    /// residual in a plain store). `act` stays in the concatenated layout.
    CatOutput { add2: bool },
}

/// One forward tile kernel: `rows * blocks` output rows by `9 - k` output columns
/// (an 8-pixel input row segment minus the halo) for `8 * couts_per_lane` output
/// channels. Blocks are computed one after another inside each channel chunk so
/// their accumulators are live one block at a time while the weights are shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ForwardTile {
    pub k: u32,
    pub rows: u32,
    pub blocks: u32,
    pub couts_per_lane: u32,
    pub gelu_input: bool,
    pub epilogue: Epilogue,
    /// Channels per load and store in the epilogue (1, 2 or 4; 1 for a plain
    /// store into a cat's two outputs). Above 1, each lane owns `couts_per_lane`
    /// consecutive channels instead of every 8th, so that its stores go out as
    /// vectors: on lavapipe every storage access is a loop over the lanes with
    /// a bounds check per component, and the epilogue, not the FMAs, bounds a
    /// 1x1 conv with a short reduction.
    pub vec: u32,
    pub sources: Sources,
    /// Channels per load of x (one source): 4 (vec4s), or 2 or 1 where its
    /// `p.cin` channels are no multiple of 4 (`array<vec2<f32>>`,
    /// `array<f32>`): the vec4 the tile works on is assembled from pairs or
    /// single channels, those past `p.cin` zero, so a ragged operand is read
    /// in place instead of copied with padded channels. The weights hold
    /// whole vec4s (copied padded, or flipped so for dx; see `pad.rs`) unless
    /// `w_in_place`.
    pub x_width: u32,
    /// The weights `[cout, k, k, cin]` read where they lie, `x_width` channels
    /// per load with the same masks as x (one source, `x_width` below 4):
    /// for a conv over few pixels, where the dispatch that would copy them
    /// padded costs more than the narrower loads (see `pad.rs`).
    pub w_in_place: bool,
}

impl ForwardTile {
    pub fn cols(&self) -> u32 {
        9 - self.k
    }

    pub fn tile_rows(&self) -> u32 {
        self.rows * self.blocks
    }

    pub fn couts_per_workgroup(&self) -> u32 {
        LANES * self.couts_per_lane
    }

    pub fn name(&self) -> String {
        format!("conv2d_tiled_forward_{self:?}")
    }
}

/// Uniform struct of the forward tile (see `tiled.rs` for the Rust side).
const FORWARD_HEADER: &str = "
struct Params {
    n: u32,
    h: u32,
    w: u32,
    cin4: u32,
    cout: u32,
    tiles_w: u32,
    tiles_h: u32,
    tiles: u32,
    // Channels of the first source (input for a cat input, output for a cat
    // output); the second holds the rest. Unused with one source.
    cat_split: u32,
    // Input channels (cin4 vec4s of them, the last maybe part padding); read
    // by the tiles over x in pairs only.
    cin: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> wt: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
// The residual (forward) or the conv's original input (dx epilogue).
@group(0) @binding(3) var<storage, read> extra: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

fn gelu4(v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(gelu(v.x), gelu(v.y), gelu(v.z), gelu(v.w));
}
";

/// WGSL (after gelu.wgsl) of one forward tile kernel, entry point `main`.
pub fn forward(t: &ForwardTile) -> String {
    let (k, cols, cpl) = (t.k, t.cols(), t.couts_per_lane);
    let pad = k / 2;
    let in_rows = t.tile_rows() + k - 1;
    let v = t.vec;
    let mut s = String::from(FORWARD_HEADER);
    let ty = if v > 1 { format!("vec{v}<f32>") } else { "f32".into() };
    if v > 1 {
        // The epilogue's per-element arrays as vectors of `v` channels (a
        // plain store's bias is per channel and stays scalar).
        let vectors: &[&str] = match t.epilogue {
            Epilogue::GeluGrad { .. } => &["bias: ", "extra: ", "y: "],
            Epilogue::Store { .. } => &["extra: ", "y: "],
        };
        for name in vectors {
            s = s.replace(&format!("{name}array<f32>"), &format!("{name}array<{ty}>"));
        }
    }
    s = s.replace("x: array<vec4<f32>>", &format!("x: array<{}>", elem(t.x_width)));
    if t.w_in_place {
        s = s.replace("wt: array<vec4<f32>>", &format!("wt: array<{}>", elem(t.x_width)));
    }
    let mut binding = 6;
    let mut declare = |s: &mut String, access: &str, name: &str, elem: &str| {
        s.push_str(&format!(
            "@group(0) @binding({binding}) var<storage, {access}> {name}: array<{elem}>;\n"
        ));
        binding += 1;
    };
    if let Epilogue::GeluGrad { act: true, .. } = t.epilogue {
        declare(&mut s, "read_write", "act", &ty);
    }
    match t.sources {
        Sources::One => {}
        Sources::CatInput => declare(&mut s, "read", "x2", "vec4<f32>"),
        Sources::CatOutput { .. } => {
            declare(&mut s, "read_write", "y2", &ty);
            declare(&mut s, "read", "extra2", &ty);
            declare(&mut s, "read", "bias2", &ty);
        }
    }
    let o = &mut s;
    wl(o, &format!("@compute @workgroup_size({LANES})"));
    wl(
        o,
        "fn main(@builtin(subgroup_invocation_id) lane: u32, @builtin(workgroup_id) wid: vec3<u32>,",
    );
    wl(o, "        @builtin(num_workgroups) nwg: vec3<u32>) {");
    wl(o, "    let tile = flat_workgroup(wid, nwg);");
    wl(o, "    if (tile >= p.tiles) { return; }");
    wl(o, "    let tw = tile % p.tiles_w;");
    wl(o, "    let th = (tile / p.tiles_w) % p.tiles_h;");
    wl(o, "    let n = tile / (p.tiles_w * p.tiles_h);");
    wl(o, &format!("    let oh0 = th * {}u;", t.tile_rows()));
    wl(o, &format!("    let ow0 = tw * {cols}u;"));
    wl(
        o,
        &format!("    let co_lane = wid.z * {}u + lane;", t.couts_per_workgroup()),
    );
    if v > 1 {
        // Each lane owns cpl consecutive channels from co_base.
        wl(
            o,
            &format!(
                "    let co_base = wid.z * {}u + lane * {cpl}u;",
                t.couts_per_workgroup()
            ),
        );
    }
    for c in 0..cpl {
        // Lanes past cout compute a clamped channel and skip the store.
        let co = if v > 1 {
            format!("co_base + {c}u")
        } else {
            format!("co_lane + {}u", 8 * c)
        };
        wl(o, &format!("    let co{c} = min({co}, p.cout - 1u);"));
    }
    // Input vec4s per pixel of each source.
    let loops: Vec<(&str, &str, &str)> = match t.sources {
        Sources::CatInput => {
            wl(o, "    let c4a = p.cat_split / 4u;");
            wl(o, "    let c4b = p.cin4 - c4a;");
            vec![("x", "xb", "c4a"), ("x2", "xc", "c4b")]
        }
        _ if t.x_width < 4 => {
            wl(o, "    let c4a = p.cin4;");
            // Loads per pixel.
            wl(o, &format!("    let cwa = p.cin / {}u;", t.x_width));
            vec![("x", "xb", "cwa")]
        }
        _ => {
            wl(o, "    let c4a = p.cin4;");
            vec![("x", "xb", "c4a")]
        }
    };
    if let Sources::CatOutput { .. } = t.sources {
        wl(o, "    let c2 = p.cout - p.cat_split;");
    }
    wl(
        o,
        "    // This lane's input column; wrap-around makes the left halo fail `< p.w`.",
    );
    wl(o, &format!("    let iw = ow0 + lane - {pad}u;"));
    for ir in 0..in_rows {
        wl(o, &format!("    let ih{ir} = oh0 + {ir}u - {pad}u;"));
        wl(o, &format!("    let ok{ir} = ih{ir} < p.h && iw < p.w;"));
        for &(_, base, per_pixel) in &loops {
            wl(
                o,
                &format!("    let {base}{ir} = select(0u, ((n * p.h + ih{ir}) * p.w + iw) * {per_pixel}, ok{ir});"),
            );
        }
    }
    for r in 0..t.tile_rows() {
        for oc in 0..cols {
            for c in 0..cpl {
                let init = match t.epilogue {
                    Epilogue::Store { bias: true, .. } => format!("bias[co{c}]"),
                    _ => "0.0".to_string(),
                };
                wl(o, &format!("    var a{r}_{oc}_{c} = {init};"));
            }
        }
    }
    // One loop per source, the second's weights from channel `cat_split` on: the
    // same sums in the same order as one loop over the concatenation.
    for (i, &(buf, base, _)) in loops.iter().enumerate() {
        let w_first = if i == 0 { String::new() } else { "c4a + ".to_string() };
        let count = if i == 0 { "c4a" } else { "c4b" };
        channel_loop(o, t, buf, base, count, &w_first);
    }
    for r in 0..t.tile_rows() {
        for oc in 0..cols {
            wl(o, &format!("    if (oh0 + {r}u < p.h && ow0 + {oc}u < p.w) {{"));
            wl(
                o,
                &format!("        let pix = (n * p.h + oh0 + {r}u) * p.w + ow0 + {oc}u;"),
            );
            wl(o, "        let q = pix * p.cout;");
            if v > 1 {
                vector_epilogue(o, t, r, oc);
                wl(o, "    }");
                continue;
            }
            for c in 0..cpl {
                let a = format!("a{r}_{oc}_{c}");
                let guard = format!("co_lane + {}u < p.cout", 8 * c);
                wl(o, &format!("        if ({guard}) {{"));
                scalar_epilogue(o, t, &a, &format!("co{c}"));
                wl(o, "        }");
            }
            wl(o, "    }");
        }
    }
    wl(o, "}");
    s
}

/// The reduction over one source's input vec4s (`count` of them, at `base`
/// per input row in `buf`), the weights read from vec4 `w_first + c4`.
fn channel_loop(o: &mut String, t: &ForwardTile, buf: &str, base: &str, count: &str, w_first: &str) {
    let (k, cols, cpl) = (t.k, t.cols(), t.couts_per_lane);
    let in_rows = t.tile_rows() + k - 1;
    wl(o, &format!("    for (var c4 = 0u; c4 < {count}; c4++) {{"));
    // Whether each later load of this vec4 holds channels (else the next pixel's).
    let per_vec4 = 4 / t.x_width;
    for j in 1..per_vec4 {
        wl(
            o,
            &format!("        let has{j} = 4u * c4 + {}u < p.cin;", j * t.x_width),
        );
    }
    for c in 0..cpl {
        for tap in 0..k * k {
            let row = format!("co{c} * {}u + {tap}u", k * k);
            let w = if t.w_in_place {
                // The row's loads start at a multiple of the width (cin is one).
                let at = format!("wi{c}_{tap}");
                wl(
                    o,
                    &format!(
                        "        let {at} = ({row}) * (p.cin / {}u) + {per_vec4}u * c4;",
                        t.x_width
                    ),
                );
                load_vec4("wt", t.x_width, &at, |j| format!("has{j}"))
            } else {
                format!("wt[({row}) * p.cin4 + {w_first}c4]")
            };
            wl(o, &format!("        let w{c}_{tap} = {w};"));
        }
    }
    let mut loaded = vec![false; in_rows as usize];
    for b in 0..t.blocks {
        for irb in 0..t.rows + k - 1 {
            let ir = b * t.rows + irb;
            if !loaded[ir as usize] {
                loaded[ir as usize] = true;
                let v = if t.x_width < 4 {
                    wl(o, &format!("        let xi{ir} = {base}{ir} + {per_vec4}u * c4;"));
                    let x = load_vec4(buf, t.x_width, &format!("xi{ir}"), |j| format!("has{j}"));
                    format!("select(vec4<f32>(0.0), {x}, ok{ir})")
                } else {
                    format!("select(vec4<f32>(0.0), {buf}[{base}{ir} + c4], ok{ir})")
                };
                let v = if t.gelu_input { format!("gelu4({v})") } else { v };
                wl(o, &format!("        let xv{ir} = {v};"));
            }
            for ic in 0..8u32 {
                wl(o, &format!("        {{ let v = subgroupBroadcast(xv{ir}, {ic}u);"));
                for kh in 0..k {
                    let Some(r) = irb.checked_sub(kh).filter(|&r| r < t.rows) else {
                        continue;
                    };
                    let r = b * t.rows + r;
                    for kw in 0..k {
                        let Some(oc) = ic.checked_sub(kw).filter(|&oc| oc < cols) else {
                            continue;
                        };
                        for c in 0..cpl {
                            let a = format!("a{r}_{oc}_{c}");
                            let w = format!("w{c}_{}", kh * k + kw);
                            wl(
                                o,
                                &format!(
                                    "          {a} = fma(v.x, {w}.x, fma(v.y, {w}.y, fma(v.z, {w}.z, fma(v.w, {w}.w, {a}))));"
                                ),
                            );
                        }
                    }
                }
                wl(o, "        }");
            }
        }
    }
    wl(o, "    }");
}

/// Output channel `co` (a clamped channel index) of pixel `pix`, one element
/// per access: where it goes (`y` or, past `cat_split` of a cat output, `y2`) and
/// what is read beside it at the same place (`extra`, `bias` for an addend).
/// Defines `j` (the element's index in its tensor) and `first` for a cat output.
fn scalar_epilogue(o: &mut String, t: &ForwardTile, a: &str, co: &str) {
    let cat = match t.sources {
        Sources::CatOutput { add2 } => {
            wl(o, &format!("            let first = {co} < p.cat_split;"));
            wl(
                o,
                &format!("            let j = select(pix * c2 + {co} - p.cat_split, pix * p.cat_split + {co}, first);"),
            );
            Some(add2)
        }
        _ => {
            wl(o, &format!("            let j = q + {co};"));
            None
        }
    };
    // `name[j]` from the first half's array or the second's.
    let read = |o: &mut String, var: &str, name: &str| match cat {
        Some(_) => {
            wl(o, &format!("            var {var}: f32;"));
            wl(
                o,
                &format!("            if (first) {{ {var} = {name}[j]; }} else {{ {var} = {name}2[j]; }}"),
            );
        }
        None => wl(o, &format!("            let {var} = {name}[j];")),
    };
    let write = |o: &mut String, first: &str, second: &str| match cat {
        Some(_) => wl(
            o,
            &format!("            if (first) {{ y[j] = {first}; }} else {{ y2[j] = {second}; }}"),
        ),
        None => wl(o, &format!("            y[j] = {first};")),
    };
    let add2 = cat.unwrap_or(false);
    match t.epilogue {
        Epilogue::GeluGrad { act, add } => {
            // gelu'(e) = Phi(e) + e phi(e) and gelu(e) = e Phi(e), as gelu.wgsl computes them.
            read(o, "e", "extra");
            wl(o, "            let cdf = normal_cdf(e);");
            let g = format!("{a} * (cdf + e * 0.3989422804014327 * exp(-0.5 * e * e))");
            let plus = |on: bool, name: &str| if on { format!("{g} + {name}[j]") } else { g.clone() };
            write(o, &plus(add, "bias"), &plus(add2, "bias2"));
            if act {
                wl(o, &format!("            act[q + {co}] = e * cdf;"));
            }
        }
        Epilogue::Store { residual, .. } => {
            // A cat output's second residual is read from extra2 (the dx addend of x2).
            let plus = |on: bool, name: &str| if on { format!("{a} + {name}[j]") } else { a.to_string() };
            write(o, &plus(residual, "extra"), &plus(add2, "extra2"));
        }
    }
}

/// The epilogue of output pixel (r, oc) with `t.vec` channels per access: the
/// lane's consecutive channels go out as vectors (all of a vector valid or none,
/// since cout and the lane's first channel are multiples of it; for a cat output
/// `cat_split` is one too, so no vector straddles the two halves).
fn vector_epilogue(o: &mut String, t: &ForwardTile, r: u32, oc: u32) {
    let v = t.vec;
    for g in 0..t.couts_per_lane / v {
        let c0 = g * v;
        wl(o, &format!("        if (co_base + {c0}u < p.cout) {{"));
        wl(o, &format!("            let co = co_base + {c0}u;"));
        wl(o, &format!("            let i = (q + co) / {v}u;"));
        let accs: Vec<String> = (0..v).map(|j| format!("a{r}_{oc}_{}", c0 + j)).collect();
        let acc = format!("vec{v}<f32>({})", accs.join(", "));
        match t.epilogue {
            Epilogue::GeluGrad { act, add } => vector_gelu_grad(o, t, &acc, act, add),
            Epilogue::Store { residual, .. } => {
                let plus = if residual { " + extra[i]" } else { "" };
                wl(o, &format!("            y[i] = {acc}{plus};"));
            }
        }
        wl(o, "        }");
    }
}

/// The GELU gradient of one vector `acc` of a lane's channels, `co` its first
/// channel and `i` its index in the vector arrays.
fn vector_gelu_grad(o: &mut String, t: &ForwardTile, acc: &str, act: bool, add: bool) {
    let v = t.vec;
    let comps = ["x", "y", "z", "w"];
    let add2 = match t.sources {
        Sources::CatOutput { add2 } => {
            wl(o, "            let first = co < p.cat_split;");
            wl(
                o,
                &format!(
                    "            let j = select(pix * c2 + co - p.cat_split, pix * p.cat_split + co, first) / {v}u;"
                ),
            );
            wl(o, &format!("            var e: vec{v}<f32>;"));
            wl(o, "            if (first) { e = extra[j]; } else { e = extra2[j]; }");
            Some(add2)
        }
        _ => {
            wl(o, "            let e = extra[i];");
            None
        }
    };
    let cdf: Vec<String> = comps[..v as usize]
        .iter()
        .map(|c| format!("normal_cdf(e.{c})"))
        .collect();
    wl(o, &format!("            let cdf = vec{v}<f32>({});", cdf.join(", ")));
    let g = format!("{acc} * (cdf + e * 0.3989422804014327 * exp(-0.5 * e * e))");
    match add2 {
        None => {
            let plus = if add { " + bias[i]" } else { "" };
            wl(o, &format!("            y[i] = {g}{plus};"));
        }
        Some(add2) => {
            let plus = if add { " + bias[j]" } else { "" };
            let plus2 = if add2 { " + bias2[j]" } else { "" };
            wl(o, &format!("            let g = {g};"));
            wl(
                o,
                &format!("            if (first) {{ y[j] = g{plus}; }} else {{ y2[j] = g{plus2}; }}"),
            );
        }
    }
    if act {
        wl(o, "            act[i] = e * cdf;");
    }
}

/// One weight-gradient kernel: a workgroup owns `4 * ci_vecs` input channels by 32
/// output channels (4 per lane) for every tap, and sums over its share of
/// 8-pixel row segments; it writes one reduction split's partial sums (and of db).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WeightTile {
    pub k: u32,
    /// Input-channel vec4s per workgroup (4 channels each).
    pub ci_vecs: u32,
    pub gelu_input: bool,
    /// x is `cat[x, x2]`, x holding the first `4 * cat_split4` channels: each
    /// workgroup's channels lie in one of the two (`ci_vecs` divides both).
    pub cat: bool,
    /// x is a zero-padded copy in the scratch that also holds the partial sums
    /// (a cat copied side by side, see `pad.rs`): every buffer is bound
    /// `read_write`, as a buffer may not be bound both read-only and writable
    /// in one dispatch.
    pub scratch_inputs: bool,
    /// Channels per load of x (one source), 4, 2 or 1, its pixels `p.cin`
    /// channels apart (see `ForwardTile::x_width`).
    pub x_width: u32,
    /// Channels per load of dy, its pixels `p.cout` channels apart.
    pub dy_width: u32,
}

impl WeightTile {
    pub fn name(&self) -> String {
        format!("conv2d_tiled_backward_weight_{self:?}")
    }
}

const WEIGHT_HEADER: &str = "
struct Params {
    n: u32,
    h: u32,
    w: u32,
    cin4: u32,
    cout4: u32,
    segs_w: u32,
    segments: u32,
    per_reduction_split: u32,
    // Elements of one reduction split's partial sums (dw then db), and of dw.
    stride: u32,
    w_len: u32,
    // Elements between dw and db when the kernel writes them in place (one reduction split).
    db_gap: u32,
    // Input vec4s of x when it is the first half of cat[x, x2] (else cin4).
    cat_split4: u32,
    // The true channel counts: the partial sums are `[cout, k, k, cin]` (then
    // db), and the channels of the vec4s past them (zero padding) are not stored.
    cin: u32,
    cout: u32,
}

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

fn gelu4(v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(gelu(v.x), gelu(v.y), gelu(v.z), gelu(v.w));
}
";

/// WGSL (after gelu.wgsl) of the weight-gradient kernel, entry point `main`.
pub fn weight(t: &WeightTile) -> String {
    let k = t.k;
    let pad = k / 2;
    let kk = k * k;
    let in_cols = 8 + k - 1;
    let loads = in_cols.div_ceil(8);
    let comps = ["x", "y", "z", "w"];
    let mut s = String::from(WEIGHT_HEADER);
    if t.cat {
        s.push_str("@group(0) @binding(4) var<storage, read> x2: array<vec4<f32>>;\n");
    }
    if t.scratch_inputs {
        s = s.replace("var<storage, read>", "var<storage, read_write>");
    }
    s = s.replace("x: array<vec4<f32>>", &format!("x: array<{}>", elem(t.x_width)));
    s = s.replace("dy: array<vec4<f32>>", &format!("dy: array<{}>", elem(t.dy_width)));
    let (x_loads, dy_loads) = (4 / t.x_width, 4 / t.dy_width);
    let o = &mut s;
    wl(o, &format!("@compute @workgroup_size({LANES})"));
    wl(
        o,
        "fn main(@builtin(subgroup_invocation_id) lane: u32, @builtin(workgroup_id) wid: vec3<u32>) {",
    );
    wl(o, &format!("    let ci4 = wid.x * {}u;", t.ci_vecs));
    if t.cat {
        // The workgroup's source, its vec4s per pixel and its first vec4 there.
        wl(o, "    let first = ci4 < p.cat_split4;");
        wl(o, "    let c4s = select(p.cin4 - p.cat_split4, p.cat_split4, first);");
        wl(o, "    let ci4s = select(ci4 - p.cat_split4, ci4, first);");
    } else if t.x_width < 4 {
        // Loads per pixel, the workgroup's first load.
        wl(o, &format!("    let c4s = p.cin / {}u;", t.x_width));
        wl(o, &format!("    let ci4s = {x_loads}u * ci4;"));
    } else {
        wl(o, "    let c4s = p.cin4;");
        wl(o, "    let ci4s = ci4;");
    }
    wl(
        o,
        "    // This lane's 4 output channels (one vec4 of dy); lanes past cout repeat the last.",
    );
    wl(o, "    let co4 = min(wid.y * 8u + lane, p.cout4 - 1u);");
    // Whether each later load of the lane's dy vec4 holds channels (else the next pixel's).
    for j in 1..dy_loads {
        wl(
            o,
            &format!("    let dhas{j} = 4u * co4 + {}u < p.cout;", j * t.dy_width),
        );
    }
    // Which of the workgroup's input vec4s hold channels: the last workgroup's
    // may run past cin's (when ci_vecs does not divide them).
    for v in 0..t.ci_vecs {
        wl(o, &format!("    let xin{v} = ci4 + {v}u < p.cin4;"));
    }
    // The same for the later loads of each of them.
    for v in 0..t.ci_vecs {
        for j in 1..x_loads {
            wl(
                o,
                &format!("    let xhas{v}_{j} = 4u * (ci4 + {v}u) + {}u < p.cin;", j * t.x_width),
            );
        }
    }
    wl(o, "    let b0 = wid.z * p.per_reduction_split;");
    wl(o, "    let b1 = min(b0 + p.per_reduction_split, p.segments);");
    let chans = 4 * t.ci_vecs;
    for tap in 0..kk {
        for c in 0..chans {
            wl(o, &format!("    var a{tap}_{c} = vec4<f32>(0.0);"));
        }
    }
    wl(o, "    var g = vec4<f32>(0.0);");
    wl(o, "    for (var b = b0; b < b1; b++) {");
    wl(o, "        let row = b / p.segs_w;");
    wl(o, "        let ow0 = (b % p.segs_w) * 8u;");
    wl(o, "        let oh = row % p.h;");
    wl(o, "        let n = row / p.h;");
    for q in 0..8 {
        wl(o, &format!("        let okd{q} = ow0 + {q}u < p.w;"));
        if t.dy_width < 4 {
            wl(
                o,
                &format!(
                    "        let di{q} = select(0u, (row * p.w + ow0 + {q}u) * (p.cout / {}u) + {dy_loads}u * co4, okd{q});",
                    t.dy_width
                ),
            );
            let d = load_vec4("dy", t.dy_width, &format!("di{q}"), |j| format!("dhas{j}"));
            wl(o, &format!("        let d{q} = select(vec4<f32>(0.0), {d}, okd{q});"));
        } else {
            wl(
                o,
                &format!(
                    "        let d{q} = select(vec4<f32>(0.0), dy[select(0u, (row * p.w + ow0 + {q}u) * p.cout4 + co4, okd{q})], okd{q});"
                ),
            );
        }
    }
    wl(o, "        g += ((d0 + d1) + (d2 + d3)) + ((d4 + d5) + (d6 + d7));");
    for kh in 0..k {
        wl(o, &format!("        let ih{kh} = oh + {kh}u - {pad}u;"));
        for l in 0..loads {
            wl(
                o,
                &format!("        let iw{kh}_{l} = ow0 + lane + {}u - {pad}u;", 8 * l),
            );
            wl(
                o,
                &format!("        let ok{kh}_{l} = ih{kh} < p.h && iw{kh}_{l} < p.w;"),
            );
            wl(o, &format!("        let xi{kh}_{l} = select(0u, ((n * p.h + ih{kh}) * p.w + iw{kh}_{l}) * c4s + ci4s, ok{kh}_{l});"));
        }
        for v in 0..t.ci_vecs {
            for l in 0..loads {
                // Indices past the channels (or the pixel) read element 0 and are zeroed.
                let ok = format!("ok{kh}_{l} && xin{v}");
                let load = |buf: &str| {
                    if t.x_width < 4 {
                        let i = format!("select(0u, xi{kh}_{l} + {}u, xin{v})", x_loads * v);
                        let x = load_vec4(buf, t.x_width, &i, |j| format!("xhas{v}_{j}"));
                        format!("select(vec4<f32>(0.0), {x}, {ok})")
                    } else {
                        format!("select(vec4<f32>(0.0), {buf}[select(0u, xi{kh}_{l} + {v}u, xin{v})], {ok})")
                    }
                };
                let xv = format!("xv{kh}_{v}_{l}");
                if t.cat {
                    wl(o, &format!("        var {xv}: vec4<f32>;"));
                    wl(
                        o,
                        &format!(
                            "        if (first) {{ {xv} = {}; }} else {{ {xv} = {}; }}",
                            load("x"),
                            load("x2")
                        ),
                    );
                    if t.gelu_input {
                        wl(o, &format!("        {xv} = gelu4({xv});"));
                    }
                } else {
                    let x = load("x");
                    let x = if t.gelu_input { format!("gelu4({x})") } else { x };
                    wl(o, &format!("        let {xv} = {x};"));
                }
            }
            for col in 0..in_cols {
                wl(
                    o,
                    &format!(
                        "        let xb{kh}_{v}_{col} = subgroupBroadcast(xv{kh}_{v}_{}, {}u);",
                        col / 8,
                        col % 8
                    ),
                );
            }
            // For one tap row and input channel, the broadcast values stay in registers
            // while each accumulator takes its 8 pixels in a row.
            for (cc, comp) in comps.iter().enumerate() {
                let c = 4 * v + cc as u32;
                for kw in 0..k {
                    let tap = kh * k + kw;
                    for q in 0..8 {
                        wl(
                            o,
                            &format!(
                                "        a{tap}_{c} = fma(vec4<f32>(xb{kh}_{v}_{}.{comp}), d{q}, a{tap}_{c});",
                                q + kw
                            ),
                        );
                    }
                }
            }
        }
    }
    wl(o, "    }");
    wl(o, "    if (wid.y * 8u + lane < p.cout4) {");
    wl(o, "        let base = wid.z * p.stride;");
    // Only the true channels are stored (a ragged count's last vec4 is part padding).
    for j in 0..4 {
        wl(o, &format!("        let oko{j} = co4 * 4u + {j}u < p.cout;"));
        wl(
            o,
            &format!("        let row{j} = base + (co4 * 4u + {j}u) * {kk}u * p.cin + ci4 * 4u;"),
        );
    }
    for c in 0..chans {
        wl(o, &format!("        let oki{c} = ci4 * 4u + {c}u < p.cin;"));
    }
    for tap in 0..kk {
        for c in 0..chans {
            for (j, comp) in comps.iter().enumerate() {
                wl(
                    o,
                    &format!(
                        "        if (oko{j} && oki{c}) {{ partial[row{j} + {tap}u * p.cin + {c}u] = a{tap}_{c}.{comp}; }}"
                    ),
                );
            }
        }
    }
    wl(o, "        if (ci4 == 0u) {");
    for (j, comp) in comps.iter().enumerate() {
        wl(
            o,
            &format!("            if (oko{j}) {{ partial[base + p.w_len + p.db_gap + co4 * 4u + {j}u] = g.{comp}; }}"),
        );
    }
    wl(o, "        }");
    wl(o, "    }");
    wl(o, "}");
    s
}

/// The WGSL element type of an array read `width` channels at a time.
fn elem(width: u32) -> String {
    match width {
        1 => "f32".into(),
        w => format!("vec{w}<f32>"),
    }
}

/// One vec4 of channels from `buf`, an array read `width` (2 or 1) channels
/// at a time: its first load at index `at`, load `j` (from 1) where `has(j)`
/// holds and zero elsewhere (its index kept at `at`, in bounds).
fn load_vec4(buf: &str, width: u32, at: &str, has: impl Fn(u32) -> String) -> String {
    let zero = if width == 1 {
        "0.0".to_string()
    } else {
        format!("{}(0.0)", elem(width))
    };
    let loads: Vec<String> = (0..4 / width)
        .map(|j| match j {
            0 => format!("{buf}[{at}]"),
            _ => {
                let c = has(j);
                format!("select({zero}, {buf}[select({at}, {at} + {j}u, {c})], {c})")
            }
        })
        .collect();
    format!("vec4<f32>({})", loads.join(", "))
}

fn wl(o: &mut String, line: &str) {
    let _ = writeln!(o, "{line}");
}
