"""The corpus's proportions: how often training.corpus asks another way, and how its worlds cycle.

Each share is the chance that a training question of its kind is written that way (a fraction of
its kind, not of the corpus); the evaluation split uses none of them.
"""

# Shares of training questions written another way (training.variations): arithmetic as a verb
# phrase, as a word problem, with its numbers in words; any question typed in a hurry; a fact
# question after a sentence that names the entity.
VERB_SHARE = 0.10
STORY_SHARE = 0.12
WORDS_SHARE = 0.16
CARELESS_SHARE = 0.18
EMBED_SHARE = 0.12
# Shares of training questions in talk of the user's own (training.variations.chatty), of small talk
# made from parts (training.small_talk) among the chat, and of a later exchange being small talk.
CHATTY_SHARE = 0.15
SMALL_TALK_SHARE = 0.6
CHAT_AFTER_SHARE = 0.1

# Training dialogues per world: each entity of a world comes up about once, so names and numbers
# are (nearly) never seen twice.
WORLD_DIALOGUES = 400
# Every SHIPPED_EVERY-th world is the shipped knowledge base (its entities that are not held out).
SHIPPED_EVERY = 10
