"""Generative vision-language model: inputs and loss mask, projectors, LoRA stages, decoding, checkpoints,
and a tiny model that learns to read the side of an opacity from the image (and fails without it)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from medfuse.core.errors import ConfigError
from medfuse.evaluate.generative import (
    GenerativeEvalConfig,
    collect_rows,
    evaluate_generative,
    shuffled_order,
)
from medfuse.models.generative import (
    IGNORE_INDEX,
    AnswerBank,
    ChatTemplate,
    VLMConfig,
    answer,
    answer_loss,
    build_vlm,
    closed_candidates,
    generate,
    load_vlm,
    parse_options,
    save_vlm,
    score_candidates,
    stream,
)
from medfuse.train.config import LoopConfig, OptimConfig, ScheduleConfig, StrategyConfig
from medfuse.train.generative import GenerationModule, GenerationSettings, GenerationTask, apply_stage
from medfuse.train.loop import fit
from medfuse.train.strategies import merge_lora
from tests.conftest import shared_path

QUESTION = "which side is the opacity on?"
WORDS = ["left", "right", "yes", "no", "opacity", "lung", "heart", "effusion", "nodule", "normal", "small", "large", "upper", "lower", "both", "none"]
IMAGE = {"type": "timm", "params": {"arch": "test_convnext2", "in_chans": 1}}


class SideData(Dataset):
    """Images with a bright blob in the left or the right half; the answer names the side (balanced)."""

    def __init__(self, n: int, seed: int, size: int = 32) -> None:
        g = torch.Generator().manual_seed(seed)
        self.side = torch.randperm(n, generator=g) % 2
        yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
        cx = torch.where(self.side == 0, 4 + 8 * torch.rand(n, generator=g), 20 + 8 * torch.rand(n, generator=g))
        cy = 4 + 24 * torch.rand(n, generator=g)
        sigma = (2 + 2 * torch.rand(n, generator=g))[:, None, None]
        blob = torch.exp(-((xx - cx[:, None, None]) ** 2 + (yy - cy[:, None, None]) ** 2) / (2 * sigma**2))
        self.images = (0.1 * torch.randn(n, size, size, generator=g) + 2.0 * blob).unsqueeze(1)
        self.answers = ["left" if int(s) == 0 else "right" for s in self.side]

    def __len__(self) -> int:
        return len(self.side)

    def __getitem__(self, i: int) -> dict:
        return {"index": i, "image": self.images[i], "question": QUESTION, "answer": self.answers[i],
                "answer_type": "OPEN", "patient_id": f"p{i}"}


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> object:
    """Tiny models spend their time in thread hand-offs; one thread is many times faster on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer GPT-2 with a small word-level vocabulary, saved like a downloaded model directory."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    directory = tmp_path_factory.mktemp("tiny_gpt2")
    template = ChatTemplate()
    corpus = [template.system, template.user, template.assistant, template.context, QUESTION,
              "is the opacity on the left ? history of cough", " ".join(WORDS)]
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[BOS]", "[EOS]", "[UNK]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="[BOS]", eos_token="[EOS]", pad_token="[PAD]",
                                   unk_token="[UNK]")
    fast.save_pretrained(str(directory))
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(fast), n_positions=128, n_embd=32, n_layer=2, n_head=2, bos_token_id=1,
                     eos_token_id=2, pad_token_id=0)
    GPT2LMHeadModel(cfg).save_pretrained(str(directory))
    return directory


def _vlm(lm_dir: Path, projector: str = "mlp", seed: int = 0, **extra: object) -> object:
    torch.manual_seed(seed)
    return build_vlm({"image": IMAGE, "lm": {"dir": str(lm_dir)}, "projector": projector, "num_queries": 3, **extra})


def _images(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 32, 32, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- inputs, loss mask, projectors
@pytest.mark.parametrize("projector", ["linear", "mlp", "qformer"])
def test_projected_image_tokens_take_the_image_slots(lm_dir: Path, projector: str) -> None:
    model = _vlm(lm_dir, projector)
    n_tokens = model.image_encoder(_images()).tokens.shape[1]
    embeds = model.encode_images(_images())
    assert embeds.shape == (3, 3 if projector == "qformer" else n_tokens, model.lm_dim)
    questions = [QUESTION, "is the opacity on the left?", "which side?"]
    inputs = model.build_inputs(embeds.shape[1], questions, ["left", "no", "right"])
    assert inputs.image_mask.sum(1).tolist() == [embeds.shape[1]] * 3
    mixed = model.embed(inputs, embeds)
    assert torch.equal(mixed[inputs.image_mask], embeds.reshape(-1, model.lm_dim))
    out = model(_images(), questions, ["left", "no", "right"])
    out.loss.backward()
    assert torch.isfinite(out.loss) and int(out.answer_tokens) == 1 + 1 + 1 + 3  # one word + eos each
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.projector.parameters())


def test_labels_cover_exactly_the_answer_and_eos(lm_dir: Path) -> None:
    model = _vlm(lm_dir)
    tok = model.tokenizer
    right = model.build_inputs(4, [QUESTION, "which side?"], ["left", "no"], padding="right")
    left = model.build_inputs(4, [QUESTION, "which side?"], ["left", "no"], padding="left")
    for i, answer_text in enumerate(["left", "no"]):
        labels = right.labels[i][right.labels[i] != IGNORE_INDEX].tolist()
        assert labels == tok.encode(" " + answer_text) + [tok.eos_id]
        real = right.attention_mask[i].bool()
        assert right.input_ids[i][real].tolist() == left.input_ids[i][left.attention_mask[i].bool()].tolist()
        assert right.position_ids[i][real].tolist() == list(range(int(real.sum())))
        assert left.position_ids[i][left.attention_mask[i].bool()].tolist() == list(range(int(real.sum())))
    assert right.input_ids[0, 0] == tok.bos_id and left.input_ids[1, 0] == tok.pad_id


def test_only_answer_positions_contribute_to_the_loss(lm_dir: Path) -> None:
    model = _vlm(lm_dir).eval()
    images, questions, answers = _images(), [QUESTION, "which side?", QUESTION], ["left", "right", "yes no"]
    embeds = model.encode_images(images)
    inputs = model.build_inputs(embeds.shape[1], questions, answers)
    logits = model.run_lm(model.embed(inputs, embeds), inputs).logits.detach().requires_grad_(True)
    loss, count = answer_loss(logits, inputs.labels)
    loss.backward()
    scored = torch.zeros_like(inputs.labels, dtype=torch.bool)
    scored[:, :-1] = inputs.labels[:, 1:] != IGNORE_INDEX
    assert int(count) == int(scored.sum()) == 2 + 2 + 3
    assert logits.grad[~scored].abs().max() == 0 and (logits.grad[scored].abs().sum(-1) > 0).all()
    # rewriting what the prompt positions predict (their outputs) leaves the loss alone
    noisy = logits.detach().clone()
    noisy[~scored] += 5 * torch.randn_like(noisy[~scored])
    assert torch.allclose(answer_loss(noisy, inputs.labels)[0], loss)
    # the model's own loss (logits kept at answer positions only) is the same number
    with torch.no_grad():
        assert torch.allclose(model(images, questions, answers).loss, loss, atol=1e-5)


def test_context_text_goes_into_the_prompt(lm_dir: Path) -> None:
    model = _vlm(lm_dir)
    plain = model.encode_prompts([QUESTION])[0]
    with_ctx = model.encode_prompts([QUESTION], ["history of cough"])[0]
    assert plain.before == with_ctx.before and len(with_ctx.after) > len(plain.after)
    assert "history of cough" in model.tokenizer.decode(with_ctx.after)
    with pytest.raises(ConfigError, match="chat template"):
        ChatTemplate(use_tokenizer_template=True).prompt_text("q", None, model.tokenizer)
    with pytest.raises(ConfigError, match="exactly once"):
        ChatTemplate(user="{question}")


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="exactly one of dir"):
        VLMConfig(image=IMAGE, lm={"dir": "x", "config": {"arch": "llama"}})
    with pytest.raises(ConfigError, match="qformer"):
        VLMConfig(image=IMAGE, lm={"config": {}}, projector="qformr")
    with pytest.raises(ConfigError, match="unknown keys"):
        VLMConfig(image=IMAGE, lm={"config": {"widht": 3}})


# ---------------------------------------------------------------- training stages
def _fit(module: torch.nn.Module, task: GenerationTask, data: Dataset, tmp: Path, steps: int, lr: float) -> None:
    fit(task, module, data, None, loop=LoopConfig(max_steps=steps, batch_size=16, log_every=1000, device="cpu"),
        optim=OptimConfig(lr=lr, weight_decay=0.0), schedule=ScheduleConfig(kind="cosine", warmup_steps=min(10, steps)),
        out_dir=tmp, seed=0)


def test_lora_stage_changes_only_adapter_weights(lm_dir: Path, tmp_path: Path) -> None:
    model = _vlm(lm_dir)
    settings = GenerationSettings(stage="instruct", lm="lora", vision="frozen", projector=False)
    report = apply_stage(model, settings)
    assert report.trainable_names and all("lora_" in n and n.startswith("lm.") for n in report.trainable_names)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _fit(GenerationModule(model, settings), GenerationTask(settings), SideData(32, 0), tmp_path, 3, 1e-2)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all("lora_" in k for k in changed)
    assert any("lora_B" in k for k in changed)  # B starts at zero: the adapters now act
    model.eval()
    with torch.no_grad():
        adapted = model(_images(), [QUESTION] * 3, ["left"] * 3).loss
        merged = merge_lora(model)
        assert not any("lora_" in n for n, _ in merged.named_parameters())
        assert torch.allclose(merged(_images(), [QUESTION] * 3, ["left"] * 3).loss, adapted, atol=1e-5)
    save_vlm(merged, tmp_path / "merged")
    assert load_vlm(tmp_path / "merged").model is not None


def test_align_stage_trains_the_projector_only(lm_dir: Path) -> None:
    model = _vlm(lm_dir, "qformer")
    report = apply_stage(model, GenerationSettings(stage="align", lm="frozen", vision="frozen"))
    assert report.trainable_names and all(n.startswith("projector.") for n in report.trainable_names)
    with pytest.raises(ConfigError, match="nothing trains"):
        apply_stage(_vlm(lm_dir), GenerationSettings(lm="frozen", vision="frozen", projector=False))


def test_grad_checkpointing_gives_the_same_gradients(lm_dir: Path) -> None:
    grads = []
    for enable in (False, True):
        model = _vlm(lm_dir)
        model.train()
        model.lm.config.resid_pdrop = model.lm.config.embd_pdrop = model.lm.config.attn_pdrop = 0.0
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        model.set_grad_checkpointing(enable)
        model(_images(), [QUESTION] * 3, ["left", "right", "left"]).loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.lm.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


# ---------------------------------------------------------------- decoding
def test_greedy_equals_beam_of_one(lm_dir: Path) -> None:
    model = _vlm(lm_dir)
    greedy = generate(model, _images(), [QUESTION] * 3, max_new_tokens=6)
    beam = generate(model, _images(), [QUESTION] * 3, max_new_tokens=6, num_beams=1)
    assert greedy.token_ids == beam.token_ids and greedy.texts == beam.texts
    assert greedy.scores == pytest.approx(beam.scores, abs=1e-4)
    assert all(len(ids) <= 6 for ids in greedy.token_ids)


def test_wide_beam_finds_the_best_two_token_answer(lm_dir: Path) -> None:
    """With as many beams as words, two steps of beam search are an exhaustive search: compare with one."""
    model = _vlm(lm_dir, seed=4).eval()
    tok, vocab = model.tokenizer, model.tokenizer.vocab_size
    with torch.no_grad():
        image_embeds = model.encode_images(_images(1))
        inputs = model.build_inputs(image_embeds.shape[1], [QUESTION])
        prompt = model.embed(inputs, image_embeds)
        first = model.run_lm(prompt, inputs).logits[0, -1].log_softmax(-1)
        table = model.lm.get_input_embeddings()
        cont = torch.cat([prompt.expand(vocab, -1, -1), table(torch.arange(vocab)).unsqueeze(1)], dim=1)
        mask = torch.ones(vocab, cont.shape[1], dtype=torch.long)
        second = model.lm(inputs_embeds=cont, attention_mask=mask,
                          position_ids=torch.arange(cont.shape[1]).expand(vocab, -1)).logits[:, -1].log_softmax(-1)
    total = first[:, None] + second  # (first token, second token)
    options = {(): (float(first[tok.eos_id]), 1)}  # answer -> (log-probability, length counting eos)
    for t1 in range(vocab):
        if t1 == tok.eos_id:
            continue
        options[(t1,)] = (float(total[t1, tok.eos_id]), 2)
        for t2 in range(vocab):
            if t2 != tok.eos_id:
                options[(t1, t2)] = (float(total[t1, t2]), 2)
    greedy = generate(model, _images(1), [QUESTION], max_new_tokens=2).token_ids[0]
    found = []
    for penalty in (0.0, 1.0):  # raw log-probability (short answers win), then per-token
        best = max(options, key=lambda k, p=penalty: options[k][0] / options[k][1] ** p)
        out = generate(model, _images(1), [QUESTION], max_new_tokens=2, num_beams=vocab, length_penalty=penalty)
        assert tuple(out.token_ids[0]) == best and out.scores[0] == pytest.approx(options[best][0], abs=1e-4)
        found.append(out.token_ids[0])
    assert any(ids != greedy for ids in found)  # the search is not just greedy


def test_stop_strings_cut_the_text(lm_dir: Path) -> None:
    model = _vlm(lm_dir, seed=3)
    full = generate(model, _images(1), [QUESTION], max_new_tokens=8).texts[0]
    assert len(full.split()) >= 3, full
    stop = full.split()[2]
    cut = generate(model, _images(1), [QUESTION], max_new_tokens=8, stop=[stop])
    assert cut.texts[0] == full[: full.find(stop)].strip()
    assert len(cut.token_ids[0]) < 8


def test_left_padded_batch_equals_one_at_a_time(lm_dir: Path) -> None:
    model = _vlm(lm_dir, seed=1)
    questions = [QUESTION, "is the opacity on the left? history of cough", "which side?"]
    contexts = [None, "history of cough", None]
    batch = generate(model, _images(), questions, contexts, max_new_tokens=6)
    for i in range(3):
        alone = generate(model, _images()[i:i + 1], questions[i:i + 1], contexts[i:i + 1], max_new_tokens=6)
        assert alone.token_ids[0] == batch.token_ids[i]
        assert abs(alone.scores[0] - batch.scores[i]) < 1e-3


@pytest.mark.parametrize("settings", [{}, {"do_sample": True, "temperature": 1.5, "top_p": 0.9, "seed": 7},
                                      {"stop": ["no"]}])
def test_stream_pieces_join_to_the_full_answer(lm_dir: Path, settings: dict) -> None:
    model = _vlm(lm_dir, seed=2)
    pieces = list(stream(model, _images(1)[0], QUESTION, max_new_tokens=8, **settings))
    full = generate(model, _images(1), [QUESTION], max_new_tokens=8, **settings).texts[0]
    assert "".join(pieces) == full and len(pieces) >= (2 if len(full.split()) > 2 else 1)
    if settings.get("do_sample"):
        again = generate(model, _images(1), [QUESTION], max_new_tokens=8, **settings).texts[0]
        assert again == full
    with pytest.raises(ConfigError, match="cannot stream"):
        list(stream(model, _images(1)[0], QUESTION, num_beams=2))


def test_closed_answers_pick_the_likeliest_candidate(lm_dir: Path) -> None:
    model = _vlm(lm_dir).eval()
    cands = [["left", "right"], ["yes", "no", "left right"], None]
    scores = score_candidates(model, _images(), [QUESTION] * 3, cands)
    assert [len(s) for s in scores] == [2, 3, 0]
    with torch.no_grad():  # reference: the summed log-probability of answer tokens and eos, one pair at a time
        for i, options in enumerate(cands[:2]):
            for j, option in enumerate(options):
                loss = model(_images()[i:i + 1], [QUESTION], [option]).loss
                n = len(model.tokenizer.encode(" " + option)) + 1
                assert abs(scores[i][j] - float(-loss * n)) < 1e-3
    picked = answer(model, _images(), [QUESTION] * 3, cands, config={"max_new_tokens": 3})
    assert picked[0] == cands[0][max(range(2), key=scores[0].__getitem__)]
    assert picked[1] == cands[1][max(range(3), key=scores[1].__getitem__)]


def test_candidates_of_closed_questions() -> None:
    assert parse_options("Which is bigger in this image, liver or heart ?") == ["liver", "heart"]
    assert parse_options("Which modality is shown, MRI, CT or X-Ray?") == ["MRI", "CT", "X-Ray"]
    assert parse_options("Is this a T1 weighted or T2 weighted MRI image?") == ["T1 weighted", "T2 weighted"]
    assert parse_options("What organ is shown?") == []
    assert closed_candidates("Does the picture contain liver?") == ["yes", "no"]
    assert closed_candidates("What organ is shown?") is None
    bank = AnswerBank.from_rows(["Which organ is abnormal, heart or lung?"] * 2 + ["What is it?"],
                                ["Both", "Heart", "Liver"], ["CLOSED", "CLOSED", "OPEN"])
    assert closed_candidates("Which organ is abnormal, heart or lung ?", bank) == ["heart", "lung", "Both"]
    assert AnswerBank.from_dict(bank.to_dict()) == bank


# ---------------------------------------------------------------- checkpoints
def test_save_and_load_round_trip(lm_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    byte_model = build_vlm({"image": IMAGE, "projector": "qformer", "num_queries": 2,
                            "lm": {"config": {"arch": "llama", "hidden_size": 32, "layers": 1, "heads": 2,
                                              "max_positions": 128}, "tokenizer": "byte"}})
    for model, name in ((_vlm(lm_dir, "linear"), "gpt2"), (byte_model, "llama")):
        model.eval()
        save_vlm(model, tmp_path / name, extra={"answer_bank": {"q": ["yes"]}})
        doc = json.loads((tmp_path / name / "config.json").read_text())
        assert doc["format"] == "medfuse-vlm" and doc["model"]["lm"]["dir"] == "lm"
        loaded = load_vlm(tmp_path / name)
        with torch.no_grad():
            assert torch.allclose(loaded.model(_images(), [QUESTION] * 3, ["left"] * 3).loss,
                                  model(_images(), [QUESTION] * 3, ["left"] * 3).loss, atol=1e-6)
        assert generate(loaded.model, _images(), [QUESTION] * 3, max_new_tokens=4).token_ids == \
            generate(model, _images(), [QUESTION] * 3, max_new_tokens=4).token_ids
        assert loaded.extra["answer_bank"] == {"q": ["yes"]}
    (tmp_path / "llama" / "notes.txt").write_text("kept")
    first_id = json.loads((tmp_path / "llama" / "config.json").read_text())["checkpoint_id"]
    save_vlm(byte_model, tmp_path / "llama")  # a second save replaces its own files only
    assert (tmp_path / "llama" / "notes.txt").read_text() == "kept"
    assert json.loads((tmp_path / "llama" / "config.json").read_text())["checkpoint_id"] != first_id
    assert load_vlm(tmp_path / "llama").model is not None
    with pytest.raises(ConfigError, match="not a vision-language checkpoint"):
        load_vlm(tmp_path)


# ---------------------------------------------------------------- evaluation and learning
def test_evaluator_with_oracle_and_blind_answers() -> None:
    data = SideData(40, 5)
    rows = collect_rows(DataLoader(data, batch_size=16))

    def side_oracle(images, questions, cands, contexts):  # reads the side from the pixels
        return ["left" if float(im[..., :16].sum()) > float(im[..., 16:].sum()) else "right" for im in images]

    def blind(images, questions, cands, contexts):
        return ["left"] * len(questions)

    seen = evaluate_generative(None, rows, answer_fn=side_oracle, config=GenerativeEvalConfig(seed=1)).metrics
    assert seen["vqa_open"] == 1.0 and seen["vqa_open_blank"] == 0.5 and seen["vqa_overall_drop_blank"] == 0.5
    assert seen["vqa_open_shuffled"] < 0.8 and seen["shuffle_same_group"] == 0.0
    prior = evaluate_generative(None, rows, answer_fn=blind).metrics
    assert prior["vqa_open"] == 0.5 and prior["vqa_overall_drop_blank"] == 0.0 == prior["vqa_overall_drop_shuffled"]
    order = shuffled_order(["a", "a", "b", "b", "c", "c"], seed=0)
    assert sorted(order) == list(range(6)) and all(["a", "a", "b", "b", "c", "c"][o] != g
                                                   for o, g in zip(order, ["a", "a", "b", "b", "c", "c"]))


def test_learns_to_read_the_side_and_fails_without_the_image(lm_dir: Path, tmp_path: Path) -> None:
    """A from-scratch Llama (this word-level vocabulary) + a trainable tiny CNN, 120 steps of batch 16."""
    torch.manual_seed(0)
    model = build_vlm({"image": IMAGE, "projector": "mlp", "template": {"system": ""},
                       "lm": {"config": {"arch": "llama", "hidden_size": 64, "layers": 2, "heads": 2,
                                         "max_positions": 64}, "tokenizer": str(lm_dir)}})
    settings = GenerationSettings(stage="instruct", lm="full", vision="full")
    apply_stage(model, settings)
    _fit(GenerationModule(model, settings), GenerationTask(settings), SideData(2000, 0), tmp_path, 120, 2e-3)
    held = SideData(64, 1)
    cfg = GenerativeEvalConfig(generation={"max_new_tokens": 4}, seed=0)
    metrics = evaluate_generative(model, DataLoader(held, batch_size=32), config=cfg).metrics
    assert metrics["vqa_open"] >= 0.9, metrics  # chance: 0.5
    assert metrics["vqa_open_blank"] <= 0.6 and metrics["vqa_overall_drop_blank"] >= 0.3, metrics
    assert metrics["vqa_open_shuffled"] <= 0.75, metrics
    choices = [["left", "right"]] * len(held)
    assert sum(a == b for a, b in zip(answer(model, held.images, [QUESTION] * len(held), choices), held.answers)) >= 58
    blank = answer(model, torch.zeros_like(held.images), [QUESTION] * len(held), choices)
    assert len(set(blank)) == 1  # without an image the answer no longer depends on the sample


# ---------------------------------------------------------------- the SLAKE recipe, end to end on a few rows
def test_slake_recipe_trains_saves_and_evaluates(tmp_path: Path) -> None:
    from medfuse.train.generative import build_generation, save_generation
    from medfuse.train.recipe import load_recipe
    from medfuse.train.runner import build_datasets

    recipe = load_recipe(Path(__file__).parents[1] / "configs" / "slake-generative.yaml", [
        f"data.manifest={shared_path('slake', 'manifest.jsonl')}", "data.max_rows=24", "data.cache_dir=null",
        "train.max_steps=2", "train.batch_size=8", "loss.max_val_samples=8", "loss.max_new_tokens=3"])
    _, train, val = build_datasets(recipe, tmp_path)
    task, module, report = build_generation(recipe, train)
    assert report.trainable_names and not any(n.startswith("image_encoder.") for n in report.trainable_names)
    assert task.bank is not None and task.bank.get("Does the picture contain liver?")
    model, result = fit(task, module, train, val, loop=recipe.train, optim=recipe.optim, schedule=recipe.schedule,
                        out_dir=tmp_path / "run", seed=recipe.seed)
    metrics = {k[4:]: v for k, v in result.history[-1].items() if k.startswith("val/")}
    assert {"answer_loss", "token_accuracy", "vqa_overall"} <= set(metrics)
    save_generation(model, task, recipe, train, tmp_path / "model", metrics)
    loaded = load_vlm(tmp_path / "model")
    assert loaded.extra["answer_bank"] == task.bank.to_dict() and loaded.preprocessing["image_size"] == 80
    rows = collect_rows(DataLoader(val, batch_size=8, collate_fn=val.collate_fn))
    out = evaluate_generative(loaded.model, rows, bank=AnswerBank.from_dict(loaded.extra["answer_bank"]),
                              config=GenerativeEvalConfig(generation={"max_new_tokens": 3}))
    assert 0.0 <= out.metrics["vqa_overall"] <= 1.0 and "vqa_overall_drop_blank" in out.metrics
    with pytest.raises(ConfigError, match="strategy.kind"):
        build_generation(dataclasses.replace(recipe, strategy=StrategyConfig(kind="lora")), train)
