"""Reading runs and studies back: metrics as DataFrames, Table 6, the degradation verdict,
Figure 7's layer-response statistics and the plots of Figures 6 and 7."""
from resnet_jax.analysis.plots import figure6, figure7
from resnet_jax.analysis.responses import layer_response_stds
from resnet_jax.analysis.restore import TrainedRun, latest_checkpoint_step, load_trained_run
from resnet_jax.analysis.runs import describe_run, load_run, load_study, run_name
from resnet_jax.analysis.table import PAPER_TABLE6, final_errors, results_markdown, summarize
from resnet_jax.analysis.verdict import DepthComparison, compare_depths, verdict

__all__ = ['DepthComparison', 'PAPER_TABLE6', 'TrainedRun', 'compare_depths', 'describe_run',
           'figure6', 'figure7', 'final_errors', 'latest_checkpoint_step', 'layer_response_stds',
           'load_run', 'load_study', 'load_trained_run', 'results_markdown', 'run_name',
           'summarize', 'verdict']
