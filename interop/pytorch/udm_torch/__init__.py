"""udm_torch: the PyTorch side of UnifiedDiffusion's exported models (`udm export` / `udm import`).

    import udm_torch
    network, config = udm_torch.load("export/")      # twin in eval mode, EMA weights, config.json
    udm_torch.save("export2/", network, config, step=config["step"] + 100)

Modules: networks (the twins of the C# UNet, Transformer and MLP), safetensors_io (a reader and
writer with the standard library and torch), export (load/save of exported folders), losses (the
C# families' training losses), data (MNIST/IDX and text as the C# side reads them), train_ddp
(continue training with DistributedDataParallel; run with torchrun), check (forward and loss
parity against tensors the C# side wrote).
"""
from .export import ExportError, load, read_config, save, scheduler_config
from .networks import MlpDenoiser, TextTransformer, UNet, build, parameter_count, twin_name
from .safetensors_io import SafetensorsError

__all__ = ["load", "save", "read_config", "scheduler_config", "build", "parameter_count", "twin_name",
           "UNet", "TextTransformer", "MlpDenoiser", "ExportError", "SafetensorsError"]
