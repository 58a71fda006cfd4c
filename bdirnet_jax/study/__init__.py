"""A whole reproducibility study in one command: configs x training blur families x seeds, fixed test sets,
classical baselines, paired bootstrap intervals and a report.

  python -m bdirnet_jax.study --study=configs/studies/NAME.py --output=DIR [--data_dir=D] [--study.FIELD=VALUE]

* Runs: `DIR/runs/<config>-<train_blur>-seed<k>`, ordinary workdirs trained by `train.train_and_evaluate` from
  `<study.config_dir>/<config>.py` (default `configs/`; `bdirnet` = `default.py`), loaded by path, with the
  study's `overrides`, `num_train_steps`, `seed = k`, `dataset.on_the_fly_blur = True`,
  `dataset.blur_family = <train_blur>` and no `eval_datasets` (the study scores the runs itself). Training photos
  come from `synthetic_blur` (built on first use in `--data_dir`, default `DIR/tfds`).
* Config files (`--study=` and `study.config_dir`): a relative path is looked up in the working directory first,
  then beside the installed `configs` package, so an installed copy runs `--study=configs/studies/cpu.py` from
  any directory.
* Resume: a run whose latest checkpoint step reaches `num_train_steps` is not touched again (not even restored for
  training); an unfinished one resumes from its checkpoints. Scores are cached per run in
  `<run>/study_scores.json` and for the baselines in `DIR/baseline_scores.json`, keyed by test-set label and
  fingerprint and (for runs) the checkpoint step, so a second invocation trains and scores nothing and rewrites
  the same report.
* Test sets (`testsets`): every requested synthetic family at fixed seeded kernels, plus every real dataset
  prepared in `--data_dir`.
* Baselines (`classical`), statistics and report (`report`): `DIR/report.md`, `DIR/report.csv`,
  `DIR/report_psnr.png`.
* Compilation: runs of one config in one process share its jitted train step and deblur (`train.programs`), so
  only its first run compiles; unless a JAX compilation cache is configured already, the command also uses
  `DIR/jax_cache`, so a resumed study compiles nothing it compiled before. The log gives each run's setup,
  compile (first step), train and score seconds.

Single-process (one host, any number of local devices). One job per module:

* `plan`: config files found and loaded, the study validated, each run's resolved training config;
* `records`: what a study folder holds (run folders, score caches, latest steps, config drift);
* `testsets`: the fixed test sets;
* `scoring`: scores of a run's checkpoint and of the classical baselines, cached;
* `runner`: `run()`, the orchestration (train what is missing, score, report);
* `report`: statistics, report.md/csv/png;
* `cli` (`python -m bdirnet_jax.study`): the flags and the compilation cache.
"""
