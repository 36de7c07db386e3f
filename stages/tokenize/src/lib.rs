//! Tokenization with prompt masking and packing, written as Arrow IPC.
