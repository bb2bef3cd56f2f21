//! Bandmate as a standalone application (JACK, ALSA through cpal, or the dummy backend).

fn main() {
    // SAFETY: first thing in main, before any other thread exists.
    unsafe { bandmate::nn::set_thread_count_env() };
    nice_plug::nice_export_standalone::<bandmate_plugin::Bandmate>();
}
