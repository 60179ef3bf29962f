"""Reading runs and studies back: metrics as DataFrames, Table 6 (Table 2 for ImageNet nets),
the degradation verdict, Figure 7's layer-response statistics and the plots of Figures 6 (4)
and 7."""
from resnet_jax.analysis.paper import (CIFAR_TABLE6, IMAGENET_TABLE2, PAPER_ENSEMBLE_TOP5,
                                       PAPER_RESULTS, PAPER_TEST_TABLES, TABLE1_FLOPS,
                                       PaperResults)
from resnet_jax.analysis.plots import figure6, figure6_right, figure7
from resnet_jax.analysis.responses import layer_response_stds
from resnet_jax.analysis.restore import TrainedRun, latest_checkpoint_step, load_trained_run
from resnet_jax.analysis.runs import describe_run, load_run, load_study, run_name
from resnet_jax.analysis.table import final_errors, results_markdown, summarize
from resnet_jax.analysis.verdict import (GENERATED_IMAGES, DepthComparison, compare_depths,
                                         runs_stand_in, stand_in_data, verdict)

__all__ = ['CIFAR_TABLE6', 'DepthComparison', 'GENERATED_IMAGES', 'IMAGENET_TABLE2',
           'PAPER_ENSEMBLE_TOP5', 'PAPER_RESULTS', 'PAPER_TEST_TABLES', 'PaperResults',
           'TABLE1_FLOPS', 'TrainedRun', 'compare_depths', 'describe_run', 'figure6',
           'figure6_right', 'figure7', 'final_errors', 'latest_checkpoint_step',
           'layer_response_stds', 'load_run', 'load_study', 'load_trained_run', 'results_markdown',
           'run_name', 'runs_stand_in', 'stand_in_data', 'summarize', 'verdict']
