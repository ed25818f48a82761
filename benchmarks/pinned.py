"""Traffic frozen for the benchmarks that compare with a baseline across sessions.

The simulator's own traffic changes with the work (issue 21 turned rows into conversations, and
every older figure stopped being comparable). `PinnedTraffic` keeps the shape of the simulator's
traffic as of 2026-12-01 (conversations of 1-16 turns, 5 s-2 min apart, 10% of customers known
by phone only, 1% duplicated rows, replies of every outcome) written out here, so that only the
request mechanics (which rows a range selects, publishing delay) come from the simulator.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

from exporter.tools.simulator import Row, Traffic

CHANNELS = (
    ("whatsapp", 40),
    ("web", 15),
    ("facebook_page", 10),
    ("instagram", 8),
    ("email", 8),
    ("whatsapp official direct", 7),
    ("crm+webhook", 5),
    ("facebook", 4),
    ("configurationbox", 3),
)
ROUTING_POINTS = ("101", "102", "205", "310")
QUESTIONS = (
    "Hola, bienvenido. ¿En qué podemos ayudarte?",
    "Selecciona una opción: 1. Saldo 2. Pagos 3. Asesor",
    "¿Deseas algo más?",
)
FALLBACKS = (
    "Lo siento, no entendí tu mensaje. ¿Puedes escribirlo de otra forma?",
    "Desculpe, não entendi.",
    "Sorry, I didn't understand that.",
)
STATEMENTS = ("Por favor escribe tu número de documento", "Tu solicitud fue registrada")
GOODBYES = ("Gracias por contactarnos", "Tu solicitud fue registrada")
QUERIES = ("hola", "quiero saber mi saldo", "necesito un asesor", "1", "2", "3", "gracias")
FIRST_NAMES = ("Ana", "Luis", "María", "Carlos", "Sofía", "Jorge", "Valentina", "Andrés")
THINK = (5, 10, 20, 30, 45, 60, 90, 120)
SPAN = 15 * THINK[-1]
TURNS = (1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 7, 8, 10, 12, 16)
MEAN_TURNS = 5.6


@dataclass
class PinnedTraffic(Traffic):
    """Conversations at `rate_per_minute` rows a minute, selected by date, no daily curve."""

    def __post_init__(self) -> None:
        self.daily_curve = False
        self.select_by = "date"
        super().__post_init__()

    @property
    def span(self) -> int:
        return SPAN

    @property
    def reach(self) -> int:
        return SPAN

    def _generate(self, minute: int) -> list[Row]:
        rng = random.Random(f"pinned:{self.seed}:{minute}")
        rows: list[Row] = []
        wanted = max(0.0, rng.gauss(self.rate_per_minute, self.rate_per_minute**0.5))
        for _ in range(round(wanted / MEAN_TURNS)):
            rows.extend(self._conversation(rng, minute))
        return rows

    def _conversation(self, rng: random.Random, minute: int) -> list[Row]:
        session_id = str(rng.randrange(10**9, 10**10))
        channel = rng.choices([c for c, _ in CHANNELS], weights=[w for _, w in CHANNELS])[0]
        rp = rng.choice(ROUTING_POINTS)
        name = rng.choice(FIRST_NAMES)
        customer_id = str(rng.randrange(10**7, 10**10))
        phone = "57" + str(int(customer_id) % 509999999 + 3000000000)
        by_phone = rng.random() < 0.1
        conn_id = str(rng.randrange(10**6, 10**7)) if channel.startswith("whatsapp") else "0"
        turns = rng.choice(TURNS)
        dates = [minute + rng.randrange(60)]
        for _ in range(turns - 1):
            dates.append(dates[-1] + rng.choice(THINK))
        answers = [_reply(rng) for _ in range(turns - 1)]
        ending = rng.choices(("transfer", "goodbye", "silence"), weights=(30, 50, 20))[0]
        if ending == "transfer":
            answers.append("transfer_skill")
        elif ending == "goodbye":
            answers.append(rng.choice(GOODBYES))
        else:
            answers.append(rng.choice((*QUESTIONS, *FALLBACKS)))
        rows = []
        for date, answer in zip(dates, answers, strict=True):
            record: dict[str, object] = {
                "session_id": session_id,
                "channel": channel,
                "rp_id": rp,
                "date": datetime.fromtimestamp(date, self.zone).strftime("%Y-%m-%d %H:%M:%S"),
                "customer_name": f"{name} {customer_id[-4:]}",
                "customer_email": f"{name.lower()}.{customer_id[-6:]}@example.com",
                "customer_phone": phone,
                "customer_query": rng.choice(QUERIES),
                "routing_answer": answer,
                "customer_id": "" if by_phone else customer_id,
                "conn_id": conn_id,
            }
            rows.append(Row(date, date + rng.uniform(0, 1.0), record))
            if rng.random() < 0.01:
                rows.append(Row(date, date + rng.uniform(0, 1.0), dict(record)))
        return rows


def _reply(rng: random.Random) -> str:
    x = rng.random()
    if x < 0.1:
        return f"MaskedText: {rng.randrange(10**5, 10**6)}"
    if x < 0.13:
        return ""
    if x < 0.23:
        return rng.choice(FALLBACKS)
    if x < 0.7:
        return rng.choice(QUESTIONS)
    return rng.choice(STATEMENTS)
