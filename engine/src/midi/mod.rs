//! Standard MIDI files: import (quantized to the 16th grid) and export.
