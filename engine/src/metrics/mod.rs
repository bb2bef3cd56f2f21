//! Evaluation metrics of the source papers (Yang & Lerch 2020, Mittal et al. 2021, Lerch).
