// conv2d, workgroup path: what the forward, dx and dw kernels share. Each is an
// implicit GEMM C[M,N] = A[M,K] · B[K,N] whose operands are read straight from
// the NHWC tensors (no im2col buffer):
//   forward: M = pixels, N = Cout, K = taps·Cin (k = tap·Cin + ci, the weights' own order);
//   dx:      M = pixels, N = Cin,  K = taps·Cout (k = tap·Cout + co);
//   dw:      M = Cout,   N = taps·Cin, K = the pixels of one reduction split.
// A workgroup of WG = 256 invocations (16 x 16) owns a 64 x 64 tile of C; each
// invocation keeps a 4 x 4 micro-tile in registers. K advances 16 at a time:
// every invocation stages one 4-element piece of A and one of B into workgroup
// memory (8 KiB in all), a barrier, 16 rank-1 updates of the micro-tiles, a barrier.
// No subgroup operations, so it runs at any subgroup width.
//
// Any shape: elements past an edge of M, N or K, and taps in the zero padding,
// load as 0 and are never stored. The bindings and their accessors come from
// the Rust side (workgroup.rs): with VEC4 (every channel count a multiple of
// 4) the tensors are arrays of vec4 and a 4-element piece is one load; without,
// arrays of f32 and each element is loaded (and masked) on its own.
// Included after gelu.wgsl.

// Each invocation's micro-tile is MICRO x MICRO; TILE_SIDE invocations per side.
const MICRO: u32 = 4u;
const TILE_SIDE: u32 = 16u;
// Rows (M) and columns (N) of C per workgroup: TILE_SIDE * MICRO.
const TILE: u32 = 64u;
// K per staged step.
const TILE_K: u32 = 16u;

// The pixel of a tap in the zero padding: none.
const NO_PIXEL: u32 = 0xffffffffu;

override GELU_INPUT: bool = false;

struct Params {
    n: u32,
    h: u32,
    w: u32,
    cin: u32,
    cout: u32,
    k: u32,
    pad: u32,
    // Input channels in x; x2 holds the other cin - cat_split (none without a cat).
    cat_split: u32,
    // The GEMM's rows, columns and reduction length (dw: all pixels).
    m: u32,
    ncols: u32,
    kdim: u32,
    // dw: pixels per reduction split.
    per_reduction_split: u32,
    // dw: elements between two reduction splits' rows of partial sums (0: dw and db in place).
    stride: u32,
    // dw: where a row's db partials start (past dw's).
    db_offset: u32,
    pad0: u32,
    pad1: u32,
}

// A is stored k-major with 4 consecutive rows in one vec4 (tile_a[k * 16 + m / 4][m % 4]),
// B k-major with 4 consecutive columns in one vec4: the product loop reads one vec4 of each.
var<workgroup> tile_a: array<vec4<f32>, 256>;
var<workgroup> tile_b: array<vec4<f32>, 256>;

// An invocation's 4 x 4 micro-tile: row i of it in ri, its 4 columns in the lanes.
struct Micro {
    r0: vec4<f32>,
    r1: vec4<f32>,
    r2: vec4<f32>,
    r3: vec4<f32>,
}

// The 16 rank-1 updates of one staged K step, for the invocation at (ty, tx).
fn tile_product(ty: u32, tx: u32, acc: Micro) -> Micro {
    var c = acc;
    for (var kk = 0u; kk < TILE_K; kk++) {
        let a = tile_a[kk * TILE_SIDE + ty];
        let b = tile_b[kk * TILE_SIDE + tx];
        c.r0 = fma(vec4<f32>(a.x), b, c.r0);
        c.r1 = fma(vec4<f32>(a.y), b, c.r1);
        c.r2 = fma(vec4<f32>(a.z), b, c.r2);
        c.r3 = fma(vec4<f32>(a.w), b, c.r3);
    }
    return c;
}

// Row i of the micro-tile.
fn micro_row(c: Micro, i: u32) -> vec4<f32> {
    switch i {
        case 0u: { return c.r0; }
        case 1u: { return c.r1; }
        case 2u: { return c.r2; }
        default: { return c.r3; }
    }
}

// Stores 4 consecutive K elements of one row (A) or column (B) into its staged tile.
fn stage_k_major(a_side: bool, k: u32, col: u32, v: vec4<f32>) {
    let i = k * TILE_SIDE + col / MICRO;
    let lane = col % MICRO;
    if (a_side) {
        tile_a[i][lane] = v.x;
        tile_a[i + TILE_SIDE][lane] = v.y;
        tile_a[i + 2u * TILE_SIDE][lane] = v.z;
        tile_a[i + 3u * TILE_SIDE][lane] = v.w;
    } else {
        tile_b[i][lane] = v.x;
        tile_b[i + TILE_SIDE][lane] = v.y;
        tile_b[i + 2u * TILE_SIDE][lane] = v.z;
        tile_b[i + 3u * TILE_SIDE][lane] = v.w;
    }
}

struct Pixel {
    img: u32,
    row: u32,
    col: u32,
}

fn pixel(m: u32) -> Pixel {
    let col = m % p.w;
    let rows = m / p.w;
    return Pixel(rows / p.h, rows % p.h, col);
}

// The input pixel tap `tap` of output pixel `q` reads (forward, dw), or NO_PIXEL in the padding.
// Unsigned wrap-around makes taps above/left of the image fail the `< h` test.
fn input_pixel(q: Pixel, tap: u32) -> u32 {
    let ih = q.row + tap / p.k - p.pad;
    let iw = q.col + tap % p.k - p.pad;
    return select(NO_PIXEL, (q.img * p.h + ih) * p.w + iw, ih < p.h && iw < p.w);
}

// The output pixel whose tap `tap` reads input pixel `q` (dx), or NO_PIXEL.
fn output_pixel(q: Pixel, tap: u32) -> u32 {
    let oh = q.row + p.pad - tap / p.k;
    let ow = q.col + p.pad - tap % p.k;
    return select(NO_PIXEL, (q.img * p.h + oh) * p.w + ow, oh < p.h && ow < p.w);
}

fn act(v: f32) -> f32 {
    return select(v, gelu(v), GELU_INPUT);
}

fn act4(v: vec4<f32>) -> vec4<f32> {
    if (GELU_INPUT) {
        return vec4<f32>(gelu(v.x), gelu(v.y), gelu(v.z), gelu(v.w));
    }
    return v;
}

// Element (pixel, ci) of the conv's input cat[x, x2], as stored (no act).
fn input_at(pix: u32, ci: u32) -> f32 {
    if (ci < p.cat_split) {
        return x_at(pix * p.cat_split + ci);
    }
    return x2_at(pix * (p.cin - p.cat_split) + ci - p.cat_split);
}

// Channels ci..ci+3 of one pixel of cat[x, x2] (VEC4: ci a multiple of 4, so in one source).
fn input_quad(pix: u32, ci: u32) -> vec4<f32> {
    if (ci < p.cat_split) {
        return x_quad(pix * p.cat_split + ci);
    }
    return x2_quad(pix * (p.cin - p.cat_split) + ci - p.cat_split);
}
