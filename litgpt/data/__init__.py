"""Data modules for instruction finetuning and pretraining: ``connect(tokenizer, batch_size, max_seq_length)``, then the usual
LightningDataModule steps. Every module works with the litgpt finetuning commands and with ``L.Trainer``."""

from litgpt.data.alpaca import Alpaca
from litgpt.data.alpaca_2k import Alpaca2k
from litgpt.data.alpaca_gpt4 import AlpacaGPT4
from litgpt.data.base import DataModule, SFTDataModule, SFTDataset, get_sft_collate_fn
from litgpt.data.deita import Deita
from litgpt.data.dolly import Dolly
from litgpt.data.flan import FLAN
from litgpt.data.json_data import JSON
from litgpt.data.lima import LIMA
from litgpt.data.litdata import LitData
from litgpt.data.longform import LongForm
from litgpt.data.openwebtext import OpenWebText
from litgpt.data.pirate import Pirate
from litgpt.data.text_files import TextFiles
from litgpt.data.tinyllama import MicroLlama, TinyLlama
from litgpt.data.tinystories import TinyStories

__all__ = [
    "Alpaca",
    "Alpaca2k",
    "AlpacaGPT4",
    "DataModule",
    "Deita",
    "Dolly",
    "FLAN",
    "JSON",
    "LIMA",
    "LitData",
    "LongForm",
    "OpenWebText",
    "Pirate",
    "SFTDataModule",
    "SFTDataset",
    "TextFiles",
    "MicroLlama",
    "TinyLlama",
    "TinyStories",
    "get_sft_collate_fn",
]
