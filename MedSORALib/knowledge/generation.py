"""Backends that turn a retrieved passage into clinical observations, as the paper's two steps.

Step 1 (filter): keep a chunk only if it describes a patient's symptom or clinical observation.
Step 2 (write): write ``n`` distinct observations in full medical-style sentences, grounded only
in that chunk, never naming the organ.

Backends (each records what produced a text in :meth:`Backend.provenance`):

- :class:`ChatBackend`: an OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, llama.cpp
  server, Ollama, hosted APIs), configured by arguments or ``MEDSORA_LLM_BASE_URL``,
  ``MEDSORA_LLM_MODEL``, ``MEDSORA_LLM_API_KEY``; plain ``urllib``, no client package;
- :class:`LocalLMBackend`: a transformers causal LM in a local folder;
- :class:`RuleComposer`: no model: composes sentences from ontology term names, layperson
  synonyms and definitions (HPO, Symptom Ontology) and from team-passage sentences.

:func:`generate_records` runs a backend over chunks and returns records in the dataset format
(before guards) with per-chunk filter decisions counted.
"""
from __future__ import annotations

import json
import os
import random
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from ..errors import MedSORAError, ModelError

FILTER_SYSTEM = (
    "You screen medical reference passages for a dataset of patient symptom descriptions. "
    "Answer with one word: YES or NO."
)
FILTER_USER = (
    "Does the following passage describe a patient's symptom, complaint or clinical observation "
    "(something a patient feels or a clinician notices), rather than only anatomy, genetics, "
    "epidemiology or treatment?\n\nPassage:\n{passage}\n\nAnswer YES or NO."
)
WRITE_SYSTEM = (
    "You write short clinical observations for a symptom-to-organ reasoning dataset. "
    "Use only facts stated in the passage. Never name an organ, gland or blood vessel, and never use "
    "their adjectives (such as hepatic, renal, pancreatic, splenic, gastric, aortic, adrenal, esophageal, "
    "portal or caval). Describe what the patient reports or what the clinician observes."
)
WRITE_USER = (
    "Passage:\n{passage}\n\nWrite {n} distinct clinical observations, each one full medical-style "
    "sentence about a patient, based only on this passage. Write one observation per line, with no "
    "numbering and no other text."
)

_LIST_PREFIX = re.compile(r"^\s*(?:[-*\u2022]+|\(?\d{1,3}[.):]|[a-z][.)])\s*")


class GenerationError(MedSORAError):
    """A generation backend is misconfigured or its endpoint failed."""


def split_observations(reply: str, n: int) -> list:
    """Observation lines of a model reply: bullets/numbers removed, empty lines skipped, at most ``n``."""
    out = []
    for line in str(reply).splitlines():
        line = _LIST_PREFIX.sub("", line).strip().strip('"').strip()
        if line:
            out.append(line)
    return out[:n]


def parse_yes_no(reply: str):
    """True for a reply starting with yes, False for no, None when neither."""
    word = re.match(r"\W*([a-zA-Z]+)", str(reply) or "")
    if not word:
        return None
    word = word.group(1).lower()
    return True if word == "yes" else False if word == "no" else None


class Backend:
    """Interface of a generation backend."""

    name = "backend"

    def keep_chunk(self, chunk) -> bool:
        """Step 1: does ``chunk`` describe a patient's symptom or clinical observation?"""
        raise NotImplementedError

    def write(self, chunk, n: int, rng: random.Random) -> list:
        """Step 2: up to ``n`` observations (strings) grounded in ``chunk``."""
        raise NotImplementedError

    def provenance(self) -> dict:
        """What produced the texts (backend kind, model, settings); stored with every record."""
        raise NotImplementedError


# -- OpenAI-compatible endpoint ------------------------------------------------------------------
class ChatBackend(Backend):
    """Chat completions over HTTP (``POST {base_url}/chat/completions``).

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1``; default ``$MEDSORA_LLM_BASE_URL``.
        model: model name sent to the server; default ``$MEDSORA_LLM_MODEL``.
        api_key: bearer token; default ``$MEDSORA_LLM_API_KEY`` (may be empty for local servers).
        temperature: sampling temperature of the writing step (the filter uses 0).
        max_tokens: reply limit per call.
        timeout_s: per request, seconds.
        retries: further attempts after a connection error, HTTP 429 or 5xx (waits 1, 2, 4 ... s).
    """

    name = "openai-chat"

    def __init__(self, base_url=None, model=None, api_key=None, temperature: float = 0.7,
                 max_tokens: int = 400, timeout_s: float = 120.0, retries: int = 2):
        self.base_url = (base_url or os.environ.get("MEDSORA_LLM_BASE_URL", "")).rstrip("/")
        self.model = model or os.environ.get("MEDSORA_LLM_MODEL", "")
        self.api_key = api_key if api_key is not None else os.environ.get("MEDSORA_LLM_API_KEY", "")
        if not self.base_url or not self.model:
            raise GenerationError(
                "the openai-chat backend needs a base URL and a model (MEDSORA_LLM_BASE_URL, MEDSORA_LLM_MODEL)")
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.calls = 0

    def _url(self) -> str:
        return self.base_url + ("/chat/completions" if self.base_url.endswith("/v1") else "/v1/chat/completions")

    def chat(self, system: str, user: str, temperature: float, seed=None) -> str:
        """One chat completion; returns the assistant message text."""
        body = {"model": self.model, "temperature": temperature, "max_tokens": self.max_tokens,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}
        if seed is not None:
            body["seed"] = int(seed)
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self._url(), data=json.dumps(body).encode("utf-8"), headers=headers)
        for attempt in range(self.retries + 1):
            transient = attempt < self.retries
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    payload = json.loads(response.read().decode("utf-8"))
                break
            except urllib.error.HTTPError as exc:
                if not (transient and (exc.code == 429 or exc.code >= 500)):
                    raise GenerationError(f"chat endpoint {self._url()} answered HTTP {exc.code}") from exc
            except json.JSONDecodeError as exc:
                raise GenerationError(f"chat endpoint {self._url()} returned invalid JSON") from exc
            except (urllib.error.URLError, OSError) as exc:
                if not transient:
                    raise GenerationError(f"chat endpoint {self._url()} failed: {exc}") from exc
            time.sleep(2.0 ** attempt)
        self.calls += 1
        try:
            return str(payload["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError) as exc:
            raise GenerationError(f"chat endpoint {self._url()} returned no choices[0].message.content") from exc

    def keep_chunk(self, chunk) -> bool:
        return parse_yes_no(self.chat(FILTER_SYSTEM, FILTER_USER.format(passage=chunk.text), 0.0)) is True

    def write(self, chunk, n: int, rng: random.Random) -> list:
        reply = self.chat(WRITE_SYSTEM, WRITE_USER.format(passage=chunk.text, n=n), self.temperature,
                          seed=rng.randrange(2**31))
        return split_observations(reply, n)

    def provenance(self) -> dict:
        return {"backend": self.name, "model": self.model, "base_url": self.base_url,
                "temperature": self.temperature, "max_tokens": self.max_tokens}


# -- local transformers causal LM ----------------------------------------------------------------
class LocalLMBackend(Backend):
    """A transformers causal LM loaded from a local folder (``config.json`` + weights + tokenizer).

    The filter compares the model's log-likelihood of the answers "YES" and "NO" after the
    filter prompt (ties keep the chunk); writing samples one reply of up to ``max_new_tokens``
    per asked observation and splits it into lines, as for the chat backend.
    The chat template of the tokenizer is used when it has one, else a plain prompt.

    Args:
        path: the model folder.
        device: torch device.
        max_new_tokens: token budget per asked observation.
        temperature: sampling temperature (> 0).
    """

    name = "local-lm"

    def __init__(self, path, device: str = "cpu", max_new_tokens: int = 60, temperature: float = 0.8):
        from pathlib import Path

        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise ModelError(f"local LM folder {self.path} has no config.json")
        self.device = device
        self.max_new_tokens = int(max_new_tokens)
        self.temperature = float(temperature)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(str(self.path), local_files_only=True).to(device).eval()
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load the local LM from {self.path}: {exc}".splitlines()[0]) from exc
        self._torch = torch
        self.model_type = self.model.config.model_type
        self.n_parameters = int(sum(p.numel() for p in self.model.parameters()))

    def _prompt(self, system: str, user: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "system", "content": system}, {"role": "user", "content": user}],
                tokenize=False, add_generation_prompt=True)
        return f"{system}\n\n{user}\n\nAnswer:"

    def _ids(self, text: str):
        return self.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"].to(self.device)

    def _answer_logprob(self, prompt_ids, answer: str) -> float:
        torch = self._torch
        answer_ids = self._ids(" " + answer)
        ids = torch.cat([prompt_ids, answer_ids], dim=1)
        with torch.inference_mode():
            logits = self.model(ids).logits[0, prompt_ids.shape[1] - 1 : -1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        return float(logprobs.gather(1, answer_ids[0].unsqueeze(1)).sum())

    def keep_chunk(self, chunk) -> bool:
        prompt_ids = self._ids(self._prompt(FILTER_SYSTEM, FILTER_USER.format(passage=chunk.text)))
        return self._answer_logprob(prompt_ids, "YES") >= self._answer_logprob(prompt_ids, "NO")

    def write(self, chunk, n: int, rng: random.Random) -> list:
        """One sampled reply of up to ``max_new_tokens * n`` tokens, split into lines like the chat backend."""
        torch = self._torch
        prompt_ids = self._ids(self._prompt(WRITE_SYSTEM, WRITE_USER.format(passage=chunk.text, n=n)))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        torch.manual_seed(rng.randrange(2**31))
        with torch.inference_mode():
            out = self.model.generate(
                prompt_ids, attention_mask=torch.ones_like(prompt_ids), do_sample=True,
                temperature=self.temperature, max_new_tokens=self.max_new_tokens * n, pad_token_id=pad)
        reply = self.tokenizer.decode(out[0, prompt_ids.shape[1]:], skip_special_tokens=True)
        return split_observations(reply, n)

    def provenance(self) -> dict:
        return {"backend": self.name, "model": str(self.path), "model_type": self.model_type,
                "parameters": self.n_parameters, "temperature": self.temperature,
                "max_new_tokens": self.max_new_tokens}


# -- rule-based composer -------------------------------------------------------------------------
# Words that mark a passage or term as a symptom or clinical observation (step 1 of the rules).
SYMPTOM_CUES = (
    "pain", "ache", "tender", "bleed", "blood", "vomit", "nause", "jaundice", "yellow", "itch", "pruritus",
    "swell", "swollen", "distension", "distention", "mass", "fever", "weight", "fatigue", "tired", "weak",
    "urine", "urinat", "stool", "feces", "diarrhea", "diarrhoea", "constipat", "melena", "hematemesis",
    "hematuria", "dysphagia", "swallow", "heartburn", "reflux", "regurgitat", "satiety", "appetite",
    "bloat", "belch", "colic", "ascites", "edema", "oedema", "hypertension", "hypotension", "blood pressure",
    "pigment", "sweat", "palpitat", "headache", "thirst", "polyuria", "oliguria", "anuria", "pulsat",
    "claudication", "faint", "syncope", "pale", "dark", "dizz", "shock", "cramp", "rigidity", "enlarge",
    "infection", "abscess", "insufficiency", "failure", "obstruction", "thrombosis", "hemorrhage",
    "varix", "varices", "complain", "present", "report", "symptom", "sign",
)

_CLINICAL_TEMPLATES = (
    "The patient presents with {finding}.",
    "On assessment there is evidence of {finding}.",
    "Clinical examination reveals {finding}.",
    "The referral describes {finding} that has developed over recent weeks.",
    "The attending physician documents {finding}.",
    "The clinical picture is dominated by {finding}.",
)
_DEFINITION_TEMPLATES = (
    "The patient's findings fit the following description: {definition}",
    "Clinically, the presentation corresponds to this: {definition}",
)
_LAY_TEMPLATES = (
    "I have been having {finding}.",
    "My main problem at the moment is {finding}.",
    "For the past few weeks I have noticed {finding}.",
    "I went to the doctor because of {finding}.",
)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
# Sentences that start with a pronoun need the previous sentence to make sense; the composer skips them.
_DANGLING = re.compile(r"^(It|Its|This|These|They|Their|Those|Such|He|She|Both|Either)\b")
# Symptom Ontology definitions start with their category: "A urinary system symptom that is characterized by".
_SO_DEFINITION = re.compile(r"^(?:A|An)\s+[\w\s,-]*?symptom\s+(?:that|which)\s+is\s+characteri[sz]ed\s+by\s+", re.I)


def _lower_first(text: str) -> str:
    text = text.strip().rstrip(".")
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        return text[0].lower() + text[1:]
    return text


class RuleComposer(Backend):
    """Offline composer: observations from the terms, layperson synonyms and definitions of a chunk.

    Step 1 keeps a chunk when its name, synonyms or text contain a symptom cue word
    (:data:`SYMPTOM_CUES`). Step 2 fills clinical templates with the term name and synonyms,
    lay templates with the layperson synonyms, a definition template with the definition, and,
    for team passages, uses each passage sentence that holds a symptom cue and does not start
    with a pronoun (which would need the sentence before it). Texts naming an
    organ are left for the guards to drop, so the counts show what the rules produced.
    """

    name = "rules"

    def keep_chunk(self, chunk) -> bool:
        haystack = " ".join([chunk.name, " ".join(chunk.synonyms), " ".join(chunk.lay_terms), chunk.text]).lower()
        return any(cue in haystack for cue in SYMPTOM_CUES)

    def write(self, chunk, n: int, rng: random.Random) -> list:
        candidates = []
        if chunk.origin == "team" or not chunk.name:
            for sentence in _SENTENCE_SPLIT.split(chunk.text):
                sentence = sentence.strip()
                if sentence and not _DANGLING.match(sentence) and any(c in sentence.lower() for c in SYMPTOM_CUES):
                    candidates.append(sentence if sentence.endswith(".") else sentence + ".")
        else:
            findings = [chunk.name] + list(chunk.synonyms)
            for finding in findings:
                candidates.append(rng.choice(_CLINICAL_TEMPLATES).format(finding=_lower_first(finding)))
            for lay in chunk.lay_terms:
                candidates.append(rng.choice(_LAY_TEMPLATES).format(finding=_lower_first(lay)))
            if chunk.definition:
                first = _SENTENCE_SPLIT.split(chunk.definition.strip())[0].rstrip(".") + "."
                category = _SO_DEFINITION.match(first)
                if category:
                    candidates.append("The presentation is characterized by " + first[category.end():])
                else:
                    candidates.append(rng.choice(_DEFINITION_TEMPLATES).format(definition=first))
        unique = list(dict.fromkeys(candidates))
        rng.shuffle(unique)
        return unique[:n]

    def provenance(self) -> dict:
        return {"backend": self.name, "templates": len(_CLINICAL_TEMPLATES) + len(_LAY_TEMPLATES)
                + len(_DEFINITION_TEMPLATES)}


def make_backend(settings: dict) -> Backend:
    """A backend from a config mapping: ``{"backend": "openai-chat"|"local-lm"|"rules", ...settings}``."""
    settings = dict(settings)
    kind = settings.pop("backend", None)
    for key in ("per_organ", "chunks_per_organ", "texts_per_chunk", "query", "mode"):
        settings.pop(key, None)
    if kind in ("openai-chat", "openai", "chat"):
        return ChatBackend(**settings)
    if kind in ("local-lm", "transformers", "local"):
        if "path" not in settings:
            raise GenerationError("the local-lm backend needs a 'path' to a model folder")
        return LocalLMBackend(**settings)
    if kind == "rules":
        return RuleComposer()
    raise GenerationError(f"unknown generation backend '{kind}'; use openai-chat, local-lm or rules")


def _is_lay(text: str) -> bool:
    return bool(re.search(r"\b(I|I'm|I've|my|me)\b", text))


@dataclass
class GenerationStats:
    """Filter and writing counts of one backend run.

    Attributes:
        chunks_seen, chunks_kept: step-1 decisions; chunks_rejected lists ids dropped at step 1.
        texts_written: observations returned by step 2 (before guards).
    """

    chunks_seen: int = 0
    chunks_kept: int = 0
    chunks_rejected: list = field(default_factory=list)
    texts_written: int = 0

    def to_dict(self) -> dict:
        return {"chunks_seen": self.chunks_seen, "chunks_kept": self.chunks_kept,
                "chunks_rejected": len(self.chunks_rejected), "texts_written": self.texts_written}


def generate_records(backend: Backend, chunks_by_organ: dict, texts_per_chunk: int = 3, seed: int = 0,
                     max_per_organ=None, id_prefix=None, stats: GenerationStats | None = None,
                     progress=None) -> list:
    """Run the two steps over chunks and return dataset records (before guards).

    Args:
        backend: a :class:`Backend`.
        chunks_by_organ: source organ (class key) -> chunks retrieved for it, in order.
        texts_per_chunk: ``n`` asked of step 2.
        seed: seeds the per-organ random generators (template choice, sampling seeds).
        max_per_organ: stop an organ once this many texts were written (None = no limit).
        id_prefix: record id prefix (default ``gen-<backend name>``).
        stats: a :class:`GenerationStats` to fill.
        progress: optional callable(str), told when each organ is done.

    Returns:
        Records with id, text, organ, organs (source organ first, then the chunk's other tags),
        chunk_ids, phrasing, laterality (None), backend and provenance.
    """
    stats = stats if stats is not None else GenerationStats()
    prefix = id_prefix or f"gen-{backend.name}"
    provenance = backend.provenance()
    records = []
    for organ, chunks in chunks_by_organ.items():
        rng = random.Random(f"{seed}:{organ}:{backend.name}")
        count = 0
        for chunk in chunks:
            if max_per_organ is not None and count >= max_per_organ:
                break
            stats.chunks_seen += 1
            if not backend.keep_chunk(chunk):
                stats.chunks_rejected.append(chunk.id)
                continue
            stats.chunks_kept += 1
            for text in backend.write(chunk, texts_per_chunk, rng):
                stats.texts_written += 1
                count += 1
                records.append({
                    "id": f"{prefix}-{organ}-{count:04d}", "text": text, "organ": organ,
                    "organs": [organ] + [o for o in chunk.organs if o != organ], "chunk_ids": [chunk.id],
                    "phrasing": "lay" if _is_lay(text) else "clinical", "laterality": None,
                    "backend": f"{backend.name}:{provenance.get('model', 'templates')}",
                    "provenance": provenance,
                })
        if progress:
            progress(f"{backend.name} {organ}: {count} texts")
    return records
