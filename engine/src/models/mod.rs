//! The generative models, one per file (candle; CPU everywhere, GPU with `cuda`/`metal`).

/// The named shapes of a model's configuration: `preset(name)`, the shape a name stands for
/// (one constructor may answer to several names, `"a" | "b" => make`), and `Default`, the
/// `small()` shape every model ships with.
macro_rules! presets {
    ($config:ident { $($($name:literal)|+ => $make:ident),+ $(,)? }) => {
        impl Default for $config {
            fn default() -> Self {
                Self::small()
            }
        }

        impl $config {
            #[doc = concat!("The shape called `name`: ", $($("`", $name, "` "),+),+, "(`None` for any other name).")]
            pub fn preset(name: &str) -> Option<Self> {
                match name {
                    $($($name)|+ => Some(Self::$make()),)+
                    _ => None,
                }
            }
        }
    };
}
pub(crate) use presets;

pub mod band;
pub mod hier_vae;
pub mod latent_score;
pub mod music_vae;
pub mod roll;
