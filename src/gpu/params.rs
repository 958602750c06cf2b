//! Uniform params structs (and other structs the GPU shares with Rust, like
//! the optimizer state) that carry their own layout. Declared once with
//! [`gpu_params!`](crate::gpu_params): a `#[repr(C)]` Pod struct plus the list
//! of its members (name, offset, size), which the pipeline builder and the
//! contract test compare with the WGSL struct naga reads.

/// One member of a params struct as Rust lays it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: &'static str,
    pub offset: u32,
    pub size: u32,
}

/// The byte layout of a params struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamsLayout {
    /// The Rust type name (the WGSL struct may be named otherwise).
    pub type_name: &'static str,
    pub size: u32,
    pub members: &'static [Member],
}

/// The uniform a kernel takes; only a kernel declared with this type accepts it.
pub trait GpuParams: bytemuck::Pod {
    /// `None` for [`NoParams`], the type of kernels without a uniform.
    const LAYOUT: Option<ParamsLayout>;
}

/// The params type of kernels without a uniform binding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NoParams;

// SAFETY: a fieldless repr(C) struct has no bytes, so no padding and no invalid values.
unsafe impl bytemuck::Zeroable for NoParams {}
unsafe impl bytemuck::Pod for NoParams {}

impl GpuParams for NoParams {
    const LAYOUT: Option<ParamsLayout> = None;
}

/// Declares a uniform params struct: `#[repr(C)]`, Pod, and [`GpuParams`] with
/// its member list. Fields must be Pod (u32, f32, arrays of them, or other
/// params structs) and leave no padding, as in WGSL with the same members.
///
/// ```
/// vdvae::gpu_params! {
///     /// Shapes of some kernel.
///     pub struct ExampleParams {
///         n: u32,
///         scale: f32,
///     }
/// }
/// use vdvae::gpu::GpuParams;
/// let layout = ExampleParams::LAYOUT.unwrap();
/// assert_eq!((layout.size, layout.members[1].name, layout.members[1].offset), (8, "scale", 4));
/// ```
#[macro_export]
macro_rules! gpu_params {
    (
        $(#[$attr:meta])*
        $vis:vis struct $name:ident {
            $($(#[$field_attr:meta])* $field_vis:vis $field:ident : $ty:ty),* $(,)?
        }
    ) => {
        $(#[$attr])*
        #[repr(C)]
        #[derive(Clone, Copy)]
        $vis struct $name {
            $($(#[$field_attr])* $field_vis $field: $ty),*
        }

        // Pod by hand (not the derive) so the macro works in any crate: every field
        // is Pod and the fields fill the struct exactly, so there is no padding.
        const _: () = {
            fn fields_are_pod<T: $crate::gpu::bytemuck::Pod>() {}
            #[allow(dead_code)]
            fn check() {
                $(fields_are_pod::<$ty>();)*
            }
            assert!(
                ::std::mem::size_of::<$name>() == 0 $(+ ::std::mem::size_of::<$ty>())*,
                concat!("params struct `", stringify!($name), "` has padding")
            );
        };
        // SAFETY: all fields are Pod and there is no padding (both checked above).
        unsafe impl $crate::gpu::bytemuck::Zeroable for $name {}
        unsafe impl $crate::gpu::bytemuck::Pod for $name {}

        impl $crate::gpu::GpuParams for $name {
            const LAYOUT: Option<$crate::gpu::ParamsLayout> = Some($crate::gpu::ParamsLayout {
                type_name: stringify!($name),
                size: ::std::mem::size_of::<$name>() as u32,
                members: &[$($crate::gpu::Member {
                    name: stringify!($field),
                    offset: ::std::mem::offset_of!($name, $field) as u32,
                    size: ::std::mem::size_of::<$ty>() as u32,
                }),*],
            });
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::gpu_params! {
        struct Inner { a: u32, b: [f32; 3] }
    }
    crate::gpu_params! {
        /// Doc comments and visibility pass through.
        pub(crate) struct Outer {
            inner: Inner,
            /// A scale.
            scale: f32,
        }
    }

    #[test]
    fn the_layout_lists_every_member_with_offset_and_size() {
        let l = Outer::LAYOUT.unwrap();
        assert_eq!((l.type_name, l.size), ("Outer", 20));
        assert_eq!(
            l.members,
            [
                Member {
                    name: "inner",
                    offset: 0,
                    size: 16
                },
                Member {
                    name: "scale",
                    offset: 16,
                    size: 4
                }
            ]
        );
        let o = Outer {
            inner: Inner { a: 1, b: [0.0; 3] },
            scale: 2.0,
        };
        assert_eq!(bytemuck::bytes_of(&o).len(), 20);
        assert_eq!(o.scale, 2.0);
        assert!(NoParams::LAYOUT.is_none());
    }
}
