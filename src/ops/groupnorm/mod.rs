//! TODO(helper): the groupnorm kernel family. Placeholder so the registry compiles;
//! the empty check makes kernels-test fail until the family is written.

use crate::bench::BenchCase;
use crate::check::Checker;
use crate::error::Result;
use crate::gpu::GpuContext;

pub fn check(_c: &mut Checker) -> Result<()> {
    Ok(())
}

pub fn bench_cases(_ctx: &GpuContext) -> Result<Vec<BenchCase>> {
    Ok(vec![])
}
