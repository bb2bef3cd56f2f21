//! Bandmate as a standalone application (JACK, ALSA through cpal, or the dummy backend).

fn main() {
    nice_plug::nice_export_standalone::<bandmate_plugin::Bandmate>();
}
