"""Continual generation (SPEC §4.5): the C-GAN and VAE models, their label-free importance, the strategies,
the generative trainer, the feature classifier FID is read from, and FID itself.

May import the rest of anpyc_core (config, data, importance, strategies, run_state); nothing outside this
package imports it except `anpyc_core.runner`, which chooses the trainer, and the sweeper's callers."""
