"""srlm's launcher for TRL's DPOTrainer (written by srlm next to each external DPO step).

`trl dpo` with one difference: the pairs come as token ids that srlm computed, so TRL trains on
exactly the tokens srlm's own trainer would (cases T1-T4 of srlm's tests/fixtures/cases.md).
TRL 1.16 re-tokenizes `prompt + chosen` as one string and appends the tokenizer's EOS to
standard-format text; both can change the tokens. Everything else is TRL's: the flags are
`trl dpo`'s (ScriptArguments, DPOConfig, ModelConfig, parsed by TrlParser), and the loss,
metrics, optimizer, accelerate / DeepSpeed / FSDP integration and checkpoint are DPOTrainer's.

Input: `--dataset_name FILE.jsonl`, one pair per line with `prompt_ids`, `chosen_ids`,
`rejected_ids` (lists of token ids; the texts ride along for people reading the file).
Output in `--output_dir`: TRL's saved model (HF folder), and `srlm_log.jsonl`, TRL's log
history, one line per logged step, flushed as it is written (srlm shows progress from it).
With `--use_peft true` (LoRA through PEFT): the adapter in PEFT's format in `adapter/`, and the
model with the adapter merged as the HF folder.
Run it as `python trl_dpo.py ...` or under `accelerate launch ... trl_dpo.py ...`.
"""

import json
import math
import os
import sys


def main():
    from datasets import load_dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer, ModelConfig, ScriptArguments, TrlParser, get_peft_config

    parser = TrlParser((ScriptArguments, DPOConfig, ModelConfig))
    script_args, training_args, model_args = parser.parse_args_and_config()
    training_args.model_init_kwargs = {
        **(training_args.model_init_kwargs or {}),
        "dtype": model_args.dtype,
        "attn_implementation": model_args.attn_implementation,
    }

    data = load_dataset("json", data_files=script_args.dataset_name, split="train")
    for column in ("prompt_ids", "chosen_ids", "rejected_ids"):
        if column not in data.column_names:
            sys.exit(f"{script_args.dataset_name}: no `{column}` column (srlm writes token ids)")

    class PreTokenizedDPOTrainer(DPOTrainer):
        """DPOTrainer that keeps srlm's token ids instead of tokenizing text."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

    log_path = os.path.join(training_args.output_dir, "srlm_log.jsonl")
    os.makedirs(training_args.output_dir, exist_ok=True)

    class LogLines(TrainerCallback):
        """Appends each log entry of the main process to srlm_log.jsonl (NaN as null)."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or logs is None:
                return
            line = {"step": state.global_step}
            for key, value in logs.items():
                if isinstance(value, float) and not math.isfinite(value):
                    value = None
                line[key] = value
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
                f.flush()

    trainer = PreTokenizedDPOTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=data,
        peft_config=get_peft_config(model_args),
        callbacks=[LogLines()],
    )
    trainer.train()
    if model_args.use_peft:
        # LoRA: PEFT's adapter (adapter_config.json + adapter_model.safetensors) in adapter/,
        # and the base with the adapter merged (W + (alpha / r) B A) as the HF checkpoint srlm
        # takes back. The merge loads the base once more, unsharded, on the main process (as
        # PEFT's merge_and_unload requires), so it also works after ZeRO-3 or FSDP training.
        adapter_dir = os.path.join(training_args.output_dir, "adapter")
        trainer.save_model(adapter_dir)
        trainer.accelerator.wait_for_everyone()
        if trainer.accelerator.is_main_process:
            from peft import PeftModel
            from transformers import AutoModelForCausalLM

            base = AutoModelForCausalLM.from_pretrained(
                model_args.model_name_or_path, dtype=model_args.dtype
            )
            merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
            merged.save_pretrained(training_args.output_dir)
            trainer.processing_class.save_pretrained(training_args.output_dir)
    else:
        trainer.save_model(training_args.output_dir)


if __name__ == "__main__":
    main()
