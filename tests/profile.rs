//! The kernel-level profiler on the adapter: every dispatch of a training step
//! labelled with its node and its stated work, per-kernel rows adding up to the
//! step, the conv kernels' FLOPs adding up to the model FLOPs, and the trace
//! and JSON report well formed.

use vdvae::gpu::{GpuContext, Work};
use vdvae::kernels::conv2d::{self, BackwardInput, BackwardWeight, Conv2dShape, ConvPass, Forward, Path};
use vdvae::model::preset;
use vdvae::model::report::plan_training;
use vdvae::train::{profile_training, ProfileOptions};

fn context() -> GpuContext {
    GpuContext::from_env().unwrap_or_else(|e| panic!("profiler tests need an adapter: {e}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

#[test]
fn a_profiled_step_accounts_for_every_dispatch_and_flop() {
    let ctx = context();
    let h = preset("mnist-tiny").unwrap();
    let options = ProfileOptions {
        warmup_steps: 1,
        timed_steps: 1,
        ceiling_seconds: 0.2,
        ..ProfileOptions::new(2)
    };
    let report = profile_training(&ctx, &h, &options).unwrap();
    let s = &report.step;

    // The step's dispatches, as `vdvae plan` counts them on a graph of its own.
    let planned = plan_training(&h, 2, Default::default(), Some(&ctx), None)
        .unwrap()
        .dispatches
        .unwrap()
        .0;
    assert_eq!(s.dispatches, planned);
    assert_eq!(report.dispatches.len(), planned);
    assert_eq!(report.kernels.iter().map(|k| k.dispatches).sum::<usize>(), planned);

    // Every dispatch is labelled: graph nodes by their output and op (and the
    // conv weight flip), then the optimizer.
    let mut seen_optimizer = false;
    for d in &report.dispatches {
        let l = &d.time.label;
        assert!(!l.name.is_empty() && !l.op.is_empty(), "{l:?}");
        match l.node {
            Some(_) => {
                assert!(!seen_optimizer, "graph dispatches come before the optimizer's");
                assert!(l.name.ends_with(l.op) && !d.outputs.is_empty(), "{l:?}");
            }
            // The once-per-run flip of the conv weights for dx serves all convs.
            None if l.op == "conv2d_flip_transpose_many" => assert!(!seen_optimizer, "{l:?}"),
            None => {
                seen_optimizer = true;
                assert!(l.name.starts_with("optimizer."), "{l:?}");
            }
        }
        assert!(d.time.work.bytes > 0.0, "{} states no bytes", d.time.kernel);
        assert!(d.time.seconds >= 0.0);
    }
    assert!(seen_optimizer);
    assert!(report.dispatches.iter().any(|d| d.time.label.name == "optimizer.adamw"));

    // The conv kernels carry the model FLOPs, plus the multiply-adds on the zero
    // channels a thin input (here the 1-channel image) is padded to 4 with; the
    // fused kernels add their own.
    assert!(s.model_flops > 0.0);
    let conv: f64 = report
        .dispatches
        .iter()
        .filter(|d| d.time.label.op.starts_with("conv2d"))
        .map(|d| d.time.work.flops)
        .sum();
    assert!(
        conv >= s.model_flops && conv < 1.1 * s.model_flops,
        "conv kernels {conv}, model {}",
        s.model_flops
    );
    assert!(close(s.model_op_flops, conv));
    assert!(s.kernel_flops > s.model_flops);
    let kernel_flops: f64 = report.kernels.iter().map(|k| k.flops).sum();
    assert!(close(kernel_flops, s.kernel_flops));

    // The measured step.
    assert!(s.wall_ms > 0.0 && s.gpu_busy_ms > 0.0 && s.fma_ceiling_gflops > 0.0);
    assert!(s.mfu > 0.0 && s.mfu < 1.0, "{s:?}");
    assert_eq!(s.submits_per_step, 1.0);
    let shares: f64 = report.kernels.iter().map(|k| k.share).sum();
    assert!((shares - 1.0).abs() < 1e-9);

    // The trace: valid JSON, one complete event per dispatch, each naming its node.
    let path = std::env::temp_dir().join(format!("vdvae-profile-{}.json", std::process::id()));
    let path = path.to_string_lossy().into_owned();
    report.write_trace(&path).unwrap();
    let trace: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(!std::path::Path::new(&format!("{path}.tmp")).exists());
    let events: Vec<&serde_json::Value> = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X")
        .collect();
    assert_eq!(events.len(), planned);
    let mut end = 0.0;
    for (e, d) in events.iter().zip(&report.dispatches) {
        assert_eq!(e["name"], d.time.kernel);
        assert_eq!(e["args"]["node"], d.time.label.name.as_str());
        assert_eq!(e["args"]["flops"], d.time.work.flops);
        assert!(e["args"]["outputs"].is_array());
        let (ts, dur) = (e["ts"].as_f64().unwrap(), e["dur"].as_f64().unwrap());
        assert!((ts - end).abs() < 1e-6 && dur >= 0.0, "events lie end to end");
        end = ts + dur;
    }
    let conv_event = events
        .iter()
        .find(|e| e["args"]["op"] == "conv2d_backward_weight")
        .unwrap();
    assert_eq!(conv_event["args"]["inputs"].as_array().unwrap().len(), 2);

    // The JSON report round-trips.
    let json: serde_json::Value = serde_json::from_str(&report.to_json().to_string()).unwrap();
    assert_eq!(json["step"]["dispatches"], planned);
    assert_eq!(json["kernels"].as_array().unwrap().len(), report.kernels.len());

    // The table names every kernel and ends with the step.
    let table = report.to_string();
    assert!(table.contains("adamw_update_ema") && table.contains("MFU"), "{table}");
}

/// Forward, dx and dw of one conv state 3 × its multiply-add FLOPs on both paths,
/// whatever helper passes they use; the helpers state bytes only.
#[test]
fn conv_dispatches_state_their_multiply_adds_on_both_paths() {
    let ctx = context();
    for k in [1, 3] {
        let s = Conv2dShape::new(2, 8, 8, 16, 8, k).with_gelu(true).with_bias(true);
        let x = ctx.zeros(s.x_len());
        let w = ctx.zeros(s.w_len());
        let b = ctx.zeros(s.cout);
        let y = ctx.zeros(s.y_len());
        let dx = ctx.zeros(s.x_len());
        let act = ctx.zeros(s.x_len());
        let scratch = ctx.zeros(
            s.forward_scratch_len()
                .max(s.backward_input_scratch_len())
                .max(s.backward_weight_scratch_len()),
        );
        // The tiled path where this adapter has it.
        let paths = [Path::Simple, Path::best(&ctx, &s, ConvPass::Forward)];
        for path in paths {
            let forward = Forward {
                x: x.view().into(),
                w: w.view(),
                bias: Some(b.view()),
                residual: None,
                scratch: scratch.view(),
                y: y.view(),
            };
            let mut ds = conv2d::forward(&ctx, path, &s, &forward).unwrap();
            let dx_args = BackwardInput::plain(x.view(), w.view(), y.view(), scratch.view(), dx.view());
            ds.extend(conv2d::backward_input(&ctx, path, &s, &dx_args).unwrap());
            let dw_args = BackwardWeight {
                x: x.view().into(),
                dy: y.view(),
                scratch: scratch.view(),
                act: Some(act.view()),
                dw: w.view(),
                db: Some(b.view()),
                accumulate: false,
            };
            ds.extend(conv2d::backward_weight(&ctx, path, &s, &dw_args).unwrap());
            let total = ds.iter().map(|d| d.work()).fold(Work::default(), |a, w| Work {
                flops: a.flops + w.flops,
                bytes: a.bytes + w.bytes,
            });
            assert!(close(total.flops, 3.0 * s.flops()), "k={k} {path:?}: {total:?}");
            for d in &ds {
                assert!(d.has_stated_work(), "{} states no work", d.kernel);
                assert!(d.work().bytes > 0.0);
                let conv_kernel = d.work().flops > 0.0;
                assert_eq!(conv_kernel, d.work().flops == s.flops(), "{}", d.kernel);
            }
        }
    }
}

/// Every matmul kernel states its multiply-adds once; the pack passes state bytes only.
#[test]
fn matmul_dispatches_state_their_multiply_adds() {
    use vdvae::kernels::matmul::{matmul, matmul_naive, matmul_tiled, MatmulShape};
    let ctx = context();
    for (trans_a, trans_b) in [(false, false), (true, false), (false, true)] {
        let shape = MatmulShape::new(2, 12, 16, 20).transposes(trans_a, trans_b);
        let (a_len, b_len, c_len) = shape.lens();
        let (a, b, c) = (ctx.zeros(a_len), ctx.zeros(b_len), ctx.zeros(c_len));
        let fast = matmul(&ctx, &shape, 1.0, 0.0, a.view(), b.view(), c.view()).unwrap();
        let naive = matmul_naive(&ctx, &shape, 1.0, 0.0, a.view(), b.view(), c.view()).unwrap();
        let tiled = matmul_tiled(&ctx, &shape, 1.0, 1.0, a.view(), b.view(), c.view()).unwrap();
        for ds in [fast.refs(), vec![&naive], vec![&tiled]] {
            let flops: f64 = ds.iter().map(|d| d.work().flops).sum();
            assert!(close(flops, shape.flops()), "{trans_a} {trans_b}: {flops}");
            assert!(ds.iter().all(|d| d.has_stated_work() && d.work().bytes > 0.0));
        }
    }
}
