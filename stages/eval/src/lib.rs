//! Evaluation: generation, BLEU/chrF/ROUGE as the reference tools compute them, accuracy/F1, reports, gates.
