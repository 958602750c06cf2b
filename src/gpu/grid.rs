//! How many workgroups a dispatch runs, stated in terms of the work and
//! resolved with the shader's own workgroup size (reflected by naga), so the
//! Rust side never repeats `@workgroup_size`.

/// The grid of one dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grid {
    /// `n` invocations of a 1-D kernel, in workgroups of the shader's size,
    /// folded into x and y so no dimension passes 65535. Shaders index with
    /// the prelude's `flat_index(gid, nwg, WG)`, `WG` being the constant in
    /// their `@workgroup_size`.
    Invocations(usize),
    /// `Invocations(n)` once per layer along z (e.g. per image, `gid.z`).
    InvocationLayers(usize, usize),
    /// `n` workgroups, whatever their size, folded into x and y (one workgroup
    /// per output, tile, ...). Shaders index with the prelude's
    /// `flat_workgroup(wid, nwg)`.
    Groups(usize),
    /// `Groups(n)` once per layer along z.
    GroupLayers(usize, usize),
    /// Enough workgroups to cover `extent` when each invocation handles
    /// `per_invocation` elements per dimension.
    Cover {
        extent: [usize; 3],
        per_invocation: [usize; 3],
    },
    /// An explicit workgroup count.
    Workgroups([u32; 3]),
}

/// `groups` workgroups as (x, y) with x ≤ 65535.
fn fold(groups: u64) -> [u64; 2] {
    let groups = groups.max(1);
    let x = groups.min(65535);
    [x, groups.div_ceil(x)]
}

impl Grid {
    /// Workgroups per dimension for a shader with `workgroup_size`; an error
    /// when a 1-D grid meets a shader whose workgroup is not 1-D.
    pub fn workgroups(&self, workgroup_size: [u32; 3]) -> Result<[u64; 3], String> {
        let one_d = || match workgroup_size {
            [x, 1, 1] => Ok(x as u64),
            other => Err(format!("{self:?} needs a 1-D workgroup; the shader's is {other:?}")),
        };
        Ok(match *self {
            Grid::Invocations(n) => {
                let [x, y] = fold((n as u64).div_ceil(one_d()?));
                [x, y, 1]
            }
            Grid::InvocationLayers(n, layers) => {
                let [x, y] = fold((n as u64).div_ceil(one_d()?));
                [x, y, layers as u64]
            }
            Grid::Groups(n) => {
                let [x, y] = fold(n as u64);
                [x, y, 1]
            }
            Grid::GroupLayers(n, layers) => {
                let [x, y] = fold(n as u64);
                [x, y, layers as u64]
            }
            Grid::Cover { extent, per_invocation } => std::array::from_fn(|d| {
                (extent[d] as u64).div_ceil(workgroup_size[d] as u64 * per_invocation[d] as u64)
            }),
            Grid::Workgroups(g) => g.map(u64::from),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocations_cover_n_within_the_dimension_limit() {
        for (n, wg) in [
            (1usize, 64u32),
            (64, 64),
            (65, 64),
            (65535 * 64 + 1, 64),
            (100_000_000, 256),
        ] {
            let [x, y, z] = Grid::Invocations(n).workgroups([wg, 1, 1]).unwrap();
            assert!(x <= 65535 && y <= 65535 && z == 1);
            assert!(x * y * wg as u64 >= n as u64, "{n}: {x}x{y}");
        }
        assert_eq!(Grid::Invocations(0).workgroups([64, 1, 1]), Ok([1, 1, 1]));
    }

    #[test]
    fn groups_layers_and_cover() {
        assert_eq!(Grid::Groups(70_000).workgroups([8, 8, 1]), Ok([65535, 2, 1]));
        assert_eq!(Grid::GroupLayers(3, 5).workgroups([256, 1, 1]), Ok([3, 1, 5]));
        assert_eq!(Grid::InvocationLayers(257, 4).workgroups([256, 1, 1]), Ok([2, 1, 4]));
        let cover = Grid::Cover {
            extent: [33, 64, 3],
            per_invocation: [4, 4, 1],
        };
        assert_eq!(cover.workgroups([8, 8, 1]), Ok([2, 2, 3]));
        assert_eq!(Grid::Workgroups([1, 2, 3]).workgroups([1, 1, 1]), Ok([1, 2, 3]));
    }

    #[test]
    fn a_one_d_grid_refuses_a_two_d_workgroup() {
        let err = Grid::Invocations(10).workgroups([8, 8, 1]).unwrap_err();
        assert!(err.contains("1-D") && err.contains("[8, 8, 1]"), "{err}");
    }
}
