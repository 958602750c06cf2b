// AdamW update fused with the EMA of the weights, ema = ema * rate + p * (1 - rate)
// on the updated p (official VDVAE's update_ema after optimizer.step()); both only
// when optimizer_decide set state.apply; one element or vec4 (`Elem`) per
// invocation. Included after optimizer_common.wgsl.

@group(0) @binding(0) var<storage, read_write> param: array<Elem>;
@group(0) @binding(1) var<storage, read> grad: array<Elem>;
@group(0) @binding(2) var<storage, read_write> exp_avg: array<Elem>;
@group(0) @binding(3) var<storage, read_write> exp_avg_sq: array<Elem>;
@group(0) @binding(4) var<storage, read_write> ema: array<Elem>;
@group(0) @binding(5) var<storage, read> state: OptState;
@group(0) @binding(6) var<uniform> c: UpdateParams;

@compute @workgroup_size(WG)
fn adamw_update_ema(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg, WG);
    let s = state;
    if (i >= c.n || s.apply == 0u) { return; }
    let r = adamw_element(param[i], grad[i], exp_avg[i], exp_avg_sq[i], s, c);
    param[i] = r.p;
    exp_avg[i] = r.m;
    exp_avg_sq[i] = r.v;
    ema[i] = ema[i] * c.ema_rate + r.p * (1.0 - c.ema_rate);
}
