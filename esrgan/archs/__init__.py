"""Pure network definitions (``nn.Module``) with the official Real-ESRGAN / BasicSR key names."""

from esrgan.archs.rrdbnet import RRDBNet
from esrgan.archs.srvgg import SRVGGNetCompact

__all__ = ["RRDBNet", "SRVGGNetCompact"]
