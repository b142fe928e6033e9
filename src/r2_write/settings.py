"""Project settings (kedro 1.7)."""

from kedro.config import OmegaConfigLoader

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"],
    },
    # Deep-merge conf/<env> over conf/base: an env (conf/paper, conf/local) states only what it
    # changes, and `--params a.b.c=1` changes that one leaf. Kedro's default ("destructive")
    # replaces whole top-level keys, and since runtime params are merged into the env's files
    # too, `--params evaluation.writingbench.num_queries=1` would drop every other
    # `evaluation` setting as soon as the env has a parameters file.
    "merge_strategy": {"parameters": "soft"},
}

# Dataset names are "<stage>.<name>" on purpose: the dot is Kedro's namespace separator, so
# kedro-viz groups each stage's datasets, and one catalog factory per stage serves them all.
import warnings  # noqa: E402

warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")

from r2_write.hooks import ApiKeyParameterHooks, DatasetVersionHooks, StageTimingHooks  # noqa: E402

# kedro-mlflow's hooks are registered by its plugin entry point; ours add to them
HOOKS = (ApiKeyParameterHooks(), DatasetVersionHooks(), StageTimingHooks())
