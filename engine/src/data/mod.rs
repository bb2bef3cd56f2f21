//! Dataset readers for `../shared/data`, augmentation, windowing and the preprocessed cache.
