//! A Llama-family decoder with LoRA, trained in candle; PEFT-format adapters.
