// The README's library quick-start (the sampler pieces) against the UnifiedDiffusion package:
// DDPM with the exact denoiser of the 8-Gaussian ring, whose points lie at radius 2.
using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Gaussian;

var process = new GaussianProcess(NoiseSchedule.Create(new ScheduleConfig()));
IPosteriorModel<GaussianPosterior> model = new MixtureOracle(GaussianMixture.Ring8(), process);
var sampler = new Sampler<GaussianPosterior>(process, model, GaussianKernels.Ddpm(process.Schedule));
int[] grid = TimeGrid.Create(process.Levels, steps: 50, TimeSpacing.Trailing);
using var x0 = sampler.Sample([1000, 2], grid, torch.CPU, new torch.Generator(42));
double radius = x0.norm(1).mean().item<float>();
Console.WriteLine(FormattableString.Invariant($"mean radius {radius:0.00} of {x0.shape[0]} samples"));
return Math.Abs(radius - 2) < 0.1 ? 0 : 1;
