"""Small talk for the training corpus, put together from parts (seeded): thanks, goodbyes, greetings,
acknowledgements and questions about the assistant, in the many ways people type them.

The fixed list of training.phrasings.CHAT taught the model ten greetings; the second fresh set
(bench/fresh_phrasings_2.jsonl) showed it searching the knowledge base for a word of any small talk
worded otherwise, or calling calc for a goodbye with an emoji. A message with no question in it needs
no tool however it is worded, so each kind here is a lead, a core and an ending drawn apart.
"""

from __future__ import annotations

import random

from training.phrasings import CHAT

# kind -> (leads, cores, remarks after the core); a lead or remark may be empty
PARTS: dict[str, tuple[list[str], list[str], list[str]]] = {
    "thanks": (["", "", "ok ", "great, ", "awesome, ", "perfect, ", "oh nice, ", "wow, "],
               ["thanks", "thank you", "thx", "ty", "many thanks", "thanks so much", "thank you so much",
                "much appreciated", "cheers", "thanks a bunch", "appreciate it"],
               ["", "", ", that was useful", ", you're a star", ", super helpful", " for the help",
                ", exactly what I needed", ", that worked", ", great answer", " a ton", ", that sorted it",
                ", very kind", " again"]),
    "bye": (["", "", "ok ", "alright, ", "right, ", "great, ", "ok I'm done, ", "that's everything, ",
             "gotta run, ", "I'm logging off, ", "that's it for today, ", "done for now, ", "all good, "],
            ["bye", "goodbye", "see ya", "later", "cya", "bye for now", "talk soon", "see you around",
             "catch you later", "bye bye", "signing off"],
            ["", "", " and thanks", ", have a good one", ", take care", " then"]),
    "hello": (["", "", "oh ", "well ", "um "],
              ["hey", "hiya", "heya", "yo", "hello there", "morning", "hey hey", "hi again", "hello hello",
               "howdy", "hi hi", "evening", "hey you"],
              ["", "", ", anyone there", ", you awake", " friend", ", it's me again"]),
    "ack": (["", "", "oh ", "ah ", "hmm "],
            ["ok got it", "makes sense", "cool cool", "awesome", "nice one", "haha", "lol", "great",
             "sounds good", "alright", "neat", "wow", "interesting", "I see", "fair enough", "good to know"],
            ["", "", " then", ", nice", ", noted", " haha"]),
    "who": (["", "", "so ", "wait, ", "quick question, ", "just curious, "],
            ["who is this", "who are you exactly", "what are you exactly", "are you a bot", "what should I call you",
             "is this a chatbot", "am I chatting with a computer", "who made you", "what kind of assistant are you",
             "are you an AI", "what am I talking with", "is anybody there"],
            ["", "", " actually", " by the way", " anyway"]),
}
# the replies, by kind: those of training.phrasings.CHAT, so both teach one voice
REPLIES: dict[str, list[str]] = {
    "thanks": CHAT[2][1], "bye": CHAT[5][1], "hello": CHAT[0][1], "ack": CHAT[8][1], "who": CHAT[3][1],
}
ENDINGS: dict[str, list[str]] = {
    "who": ["?", "?", "", " ?", "??", " 🤔"],
}
OTHER_ENDINGS = ["", "", "!", ".", " :)", " 🙂", " 👋", " 😊", "!!", " :D"]


def small_talk(rng: random.Random) -> tuple[str, str]:
    """(message, reply): one piece of small talk, made from a kind's lead, core, remark and ending."""
    kind = rng.choice(list(PARTS))
    leads, cores, remarks = PARTS[kind]
    message = rng.choice(leads) + rng.choice(cores) + rng.choice(remarks)
    message += rng.choice(ENDINGS.get(kind, OTHER_ENDINGS))
    if rng.random() < 0.4:
        message = message[0].upper() + message[1:]
    return message, rng.choice(REPLIES[kind])


def every_small_talk() -> list[str]:
    """Every message small_talk can make, without endings or capitals (for the held-out check)."""
    return [lead + core + remark for leads, cores, remarks in PARTS.values()
            for lead in leads for core in cores for remark in remarks]
