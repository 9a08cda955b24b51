"""What `tunery train --nproc-per-node …` launches, the FSDP unit per architecture, and mistakes refused in
one line before any process starts."""

from __future__ import annotations

import sys

import pytest

from tests.cli.test_cli import single_line, tunery
from tests.distributed.guide import guide_command
from tunery.config import ConfigError, load_config
from tunery.launch import Launch, check_strategy, decoder_layer_classes, torchrun_command
from tunery.training.distributed import Ranks

RESUME = ["--resume", "runs/x"]


def config(**sections) -> object:
    return load_config({"data": {"train": "t.jsonl"}, **sections})


def launch_of(command: list[str]) -> Launch:
    """The Launch `tunery train` builds from a command's options."""
    options = dict(zip(command[::1], command[1:], strict=False))
    return Launch(
        nproc_per_node=int(options["--nproc-per-node"]),
        nnodes=int(options.get("--nnodes", 1)),
        node_rank=int(options.get("--node-rank", 0)),
        master_addr=options.get("--master-addr"),
        master_port=int(options["--master-port"]) if "--master-port" in options else None,
    )


def test_one_machine_launches_torchrun_standalone_on_a_free_port():
    launch = launch_of(guide_command("tunery train config.yaml", "config.yaml --nproc-per-node 2"))
    assert torchrun_command(launch, RESUME) == [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--standalone",
        "-m", "tunery", "train", "--resume", "runs/x",
    ]  # fmt: skip


@pytest.mark.parametrize("node_rank", [0, 1])
def test_the_guides_two_machine_commands_launch_torchrun_with_their_rendezvous(node_rank):
    launch = launch_of(guide_command("tunery train config.yaml", f"--node-rank {node_rank}"))
    assert torchrun_command(launch, RESUME)[3:9] == [
        "--nproc-per-node=8", "--nnodes=2", f"--node-rank={node_rank}", "--master-addr=10.0.0.1",
        "--master-port=29500", "-m",
    ]  # fmt: skip
    assert launch.world == 16


@pytest.mark.parametrize(
    ("launch", "message"),
    [
        (
            Launch(2, nnodes=2, node_rank=2, master_addr="a"),
            "--node-rank 2 must be between 0 and --nnodes - 1 (1)",
        ),
        (Launch(2, nnodes=2), "--nnodes 2 needs --master-addr"),
    ],
)
def test_a_launch_that_cannot_meet_is_refused(launch, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        launch.check()


@pytest.mark.parametrize("strategy", ["ddp", "deepspeed"])
def test_a_global_batch_that_does_not_split_evenly_is_refused(strategy):
    cfg = config(train={"batch_size": 6}, distributed={"strategy": strategy})
    with pytest.raises(ConfigError, match=r"train.batch_size \(6\).*multiple of 4"):
        check_strategy(cfg, Launch(4))


@pytest.mark.parametrize(
    ("architecture", "unit"),
    [
        ("LlamaForCausalLM", "LlamaDecoderLayer"),
        ("MistralForCausalLM", "MistralDecoderLayer"),
        ("Qwen2ForCausalLM", "Qwen2DecoderLayer"),
        ("GPT2LMHeadModel", "GPT2Block"),
        ("T5ForConditionalGeneration", "T5Block"),
    ],
)
def test_fsdp_shards_each_architecture_by_its_decoder_layer(architecture, unit):
    import transformers

    assert unit in decoder_layer_classes(getattr(transformers, architecture))


def test_fsdp_unit_of_a_peft_model_is_its_base_models_layer(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraConfig(r=2))
    assert decoder_layer_classes(model) == ["LlamaDecoderLayer"]


def test_a_model_without_a_named_layer_asks_for_distributed_wrap():
    class Custom:
        _no_split_modules = None

    with pytest.raises(ConfigError, match="set distributed.wrap"):
        decoder_layer_classes(Custom)


def test_each_rank_takes_every_nth_example_of_each_micro_batch():
    groups = [["a", "b", "c", "d", "e"], ["f"]]
    assert Ranks(rank=0, world=2, strategy="ddp").shard(groups) == [["a", "c", "e"], ["f"]]
    assert Ranks(rank=1, world=2, strategy="ddp").shard(groups) == [["b", "d"]]  # no empty share
    assert Ranks().shard(groups) == groups


def test_the_distributed_section_is_validated_like_the_rest():
    with pytest.raises(ConfigError, match="'distributed.strategy'"):
        config(distributed={"strategy": "horovod"})
    with pytest.raises(ConfigError, match="did you mean 'distributed.zero_stage'"):
        config(distributed={"zero_stag": 3})
    assert config().distributed.strategy == "auto"


def test_two_machines_without_a_master_address_are_refused_in_one_line(tmp_path):
    done = tunery(
        "train", "--set", "data.train=t.jsonl", "--nproc-per-node", "2", "--nnodes", "2", cwd=tmp_path
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--nnodes 2 needs --master-addr" in single_line(done.stderr)
