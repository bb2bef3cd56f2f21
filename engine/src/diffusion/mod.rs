//! Diffusion processes and their samplers (outside the models, seeded).

pub mod binomial;
