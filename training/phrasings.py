"""What users say to the demo model: question templates, values and canned replies (seeded choice).

Training and evaluation templates are disjoint (tests/test_demo_model.py checks it); both use the
same relation keywords. `training.corpus` draws from these lists.
"""

from __future__ import annotations

CALC_TRAIN = ["What is {q}?", "What's {q}?", "Compute {q}.", "Calculate {q}.", "{q} = ?", "How much is {q}?",
              "Please compute {q}.", "Can you work out {q}?", "What do you get for {q}?", "Evaluate {q}.",
              "{q}?", "Solve {q}.", "what is {q}", "calc {q}", "Tell me {q}.", "How much is {q} exactly?",
              "Can you calculate {q} for me?", "I need the value of {q}.", "Compute {q} please.",
              "What is the value of {q}?", "Work out {q}.", "Give me {q}.", "Hey, what is {q}?"]
CALC_EVAL = ["Could you figure out {q}?", "What does {q} come to?", "Find the value of {q}.",
             "Quick question: what is {q}?", "Please calculate {q}.", "What is the result of {q}?",
             "Determine {q}.", "I want to know {q}."]

CALC_FOLLOW_TRAIN = [("Now add {n} to that.", "+"), ("Add {n} to it.", "+"), ("And plus {n}?", "+"),
                     ("Subtract {n} from that.", "-"), ("Now take away {n}.", "-"), ("And minus {n}?", "-"),
                     ("Multiply that by {n}.", "*"), ("Now times {n}?", "*"), ("And times {n}?", "*"),
                     ("Divide that by {n}.", "/"), ("Now divide it by {n}.", "/")]

WORD_OPS_TRAIN = {"+": ["plus"], "-": ["minus"], "*": ["times", "multiplied by"], "/": ["divided by", "over"],
                  "**": ["to the power of"], "%": ["modulo", "mod"]}
SYMBOL_OPS = {"+": ["+"], "-": ["-"], "*": ["*", "x"], "/": ["/"], "**": ["**", "^"], "%": ["%"]}

# relation -> (kind, question templates); the answer is the document's sentence for the relation.
FACT_TRAIN: dict[tuple[str, str], list[str]] = {
    ("country", "capital"): ["What is the capital of {n}?", "What's the capital of {n}?",
                             "Which city is the capital of {n}?", "capital of {n}?",
                             "Name the capital of {n}.", "Tell me the capital of {n}."],
    ("country", "currency"): ["What currency does {n} use?", "What is the currency of {n}?",
                              "Which currency is used in {n}?", "currency of {n}?"],
    ("country", "population"): ["What is the population of {n}?", "How many people live in {n}?",
                                "population of {n}?", "How large is the population of {n}?"],
    ("country", "flag"): ["What color is the flag of {n}?", "What is the flag of {n} like?",
                          "Describe the flag of {n}."],
    ("city", "country"): ["Which country is {n} in?", "In which country is {n}?", "Where is {n}?",
                          "What country is {n} located in?"],
    ("city", "founded"): ["When was {n} founded?", "In what year was {n} founded?", "What year was {n} founded?",
                          "When did {n} get founded?", "{n} was founded when?", "Founding year of {n}?"],
    ("city", "population"): ["What is the population of {n}?", "How many people live in {n}?",
                             "population of {n}?", "How many inhabitants does {n} have?"],
    ("person", "job"): ["Who was {n}?", "What was {n}'s job?", "What did {n} do for a living?"],
    ("person", "born"): ["When was {n} born?", "What year was {n} born?", "In which year was {n} born?",
                         "Birth year of {n}?"],
    ("person", "invented"): ["What did {n} invent?", "What was invented by {n}?",
                             "Which invention is {n} known for?"],
    ("person", "lived"): ["Where did {n} live?", "Which city did {n} live in?", "In what city did {n} live?"],
    ("element", "symbol"): ["What is the symbol of {n}?", "What is the chemical symbol for {n}?",
                            "Which symbol does {n} have?"],
    ("element", "atomic number"): ["What is the atomic number of {n}?", "atomic number of {n}?",
                                   "Which atomic number does {n} have?"],
    ("element", "melts"): ["At what temperature does {n} melt?", "What is the melting point of {n}?",
                           "When does {n} melt?", "How hot must {n} be to melt?"],
    ("element", "kind"): ["What is {n}?", "Is {n} an element?"],
    ("company", "makes"): ["What does {n} make?", "What does the company {n} produce?", "What is {n}?",
                           "Which products does {n} make?"],
    ("company", "founded"): ["When was {n} founded?", "What year was {n} founded?",
                             "In what year was the company {n} founded?"],
    ("company", "based"): ["Where is {n} based?", "In which city is {n} based?", "Where is the company {n}?"],
    ("company", "employees"): ["How many employees does {n} have?", "How many people work at {n}?",
                               "Number of employees at {n}?"],
    ("mountain", "height"): ["How high is {n}?", "How tall is {n}?", "What is the height of {n}?",
                             "height of {n}?"],
    ("mountain", "country"): ["Where is {n}?", "In which country is {n}?", "What is {n}?"],
    ("lake", "depth"): ["How deep is {n}?", "What is the depth of {n}?", "depth of {n}?"],
    ("lake", "country"): ["Where is {n}?", "In which country is the lake {n}?", "What is {n}?"],
}
# Generic phrasings around a relation's noun ("Give me the height of X."), three per relation, so
# the model keys on the relation word wherever the question puts it.
RELATION_NOUNS: dict[tuple[str, str], str] = {
    ("country", "capital"): "capital", ("country", "currency"): "currency",
    ("country", "population"): "population", ("country", "flag"): "flag", ("city", "country"): "country",
    ("city", "founded"): "founding year", ("city", "population"): "population",
    ("person", "job"): "profession", ("person", "born"): "birth year", ("person", "invented"): "invention",
    ("person", "lived"): "home city", ("element", "symbol"): "symbol", ("element", "atomic number"): "atomic number",
    ("element", "melts"): "melting point", ("company", "makes"): "products", ("company", "founded"): "founding year",
    ("company", "based"): "home city", ("company", "employees"): "number of employees",
    ("mountain", "height"): "height", ("lake", "depth"): "depth",
}
NOUN_TRAIN = ["Give me the {r} of {n}.", "I want the {r} of {n}.", "Look for the {r} of {n}.",
              "Look up the {r} of {n}.", "The {r} of {n}, please.", "What's the {r} of {n}?"]
for _i, (_key, _noun) in enumerate(RELATION_NOUNS.items()):
    FACT_TRAIN[_key] += [NOUN_TRAIN[(_i + j) % len(NOUN_TRAIN)].replace("{r}", _noun) for j in range(3)]
# Questions asked indirectly ("I wonder how high X is."): the relation as a clause, in frames
# of training's own (the evaluation's frames are others).
RELATION_CLAUSES: dict[tuple[str, str], str] = {
    ("country", "capital"): "what the capital of {n} is", ("country", "currency"): "which currency {n} uses",
    ("country", "population"): "how many people live in {n}", ("country", "flag"): "what the flag of {n} looks like",
    ("city", "country"): "which country {n} is in", ("city", "founded"): "when {n} was founded",
    ("city", "population"): "how many people live in {n}", ("person", "job"): "who {n} was",
    ("person", "born"): "when {n} was born", ("person", "invented"): "what {n} invented",
    ("person", "lived"): "where {n} lived", ("element", "symbol"): "what the symbol of {n} is",
    ("element", "atomic number"): "what the atomic number of {n} is",
    ("element", "melts"): "at what temperature {n} melts", ("company", "makes"): "what {n} makes",
    ("company", "founded"): "when {n} was founded", ("company", "based"): "where {n} is based",
    ("company", "employees"): "how many employees {n} has", ("mountain", "height"): "how high {n} is",
    ("lake", "depth"): "how deep {n} is",
}
INDIRECT_TRAIN = ["I wonder {c}.", "Could you find out {c}?", "Please check {c}.", "I need to know {c}.",
                  "Can you say {c}?", "Any idea {c}?", "Find out {c}.", "I'm curious {c}.",
                  "Could you look up {c}?", "Let me know {c}."]
for _i, (_key, _clause) in enumerate(RELATION_CLAUSES.items()):
    FACT_TRAIN[_key] += [INDIRECT_TRAIN[(2 * _i + j) % len(INDIRECT_TRAIN)].replace("{c}", _clause)
                         for j in range(3)]
# Training only: words people put around a question (greetings, thanks), a quarter of the time.
WRAP_TRAIN = ["Hi! {q}", "Hey, {q}", "Question: {q}", "{q} Thanks.", "{q} Thank you!",
              "I have a question. {q}", "Please help: {q}", "Can you look this up? {q}", "I wonder... {q}",
              "One more thing: {q}", "{q} Please check.", "Hello. {q}", "{q} I need it for a quiz."]
WRAP_SHARE = 0.25
FACT_EVAL: dict[tuple[str, str], list[str]] = {
    ("country", "capital"): ["Do you know the capital of {n}?", "I'd like to know the capital of {n}."],
    ("country", "currency"): ["Tell me which currency {n} uses.", "In {n}, what is the currency?"],
    ("country", "population"): ["Do you know the population of {n}?", "Tell me how many people live in {n}."],
    ("country", "flag"): ["Tell me the color of the flag of {n}."],
    ("city", "country"): ["Tell me which country {n} is in.", "Do you know where {n} is?"],
    ("city", "founded"): ["Do you know when {n} was founded?", "Tell me the year {n} was founded."],
    ("city", "population"): ["Tell me the population of {n}.", "Do you know how many people live in {n}?"],
    ("person", "job"): ["Do you know who {n} was?"],
    ("person", "born"): ["Do you know when {n} was born?", "Tell me the year {n} was born."],
    ("person", "invented"): ["Tell me what {n} invented.", "Do you know what {n} invented?"],
    ("person", "lived"): ["Tell me where {n} lived.", "Do you know in which city {n} lived?"],
    ("element", "symbol"): ["Tell me the symbol of {n}.", "Do you know the chemical symbol of {n}?"],
    ("element", "atomic number"): ["Tell me the atomic number of {n}."],
    ("element", "melts"): ["Tell me the melting point of {n}.", "Do you know at what temperature {n} melts?"],
    ("company", "makes"): ["Tell me what {n} makes.", "Do you know what {n} makes?"],
    ("company", "founded"): ["Do you know when {n} was founded?", "Tell me the year {n} was founded."],
    ("company", "based"): ["Tell me where {n} is based.", "Do you know where {n} is based?"],
    ("company", "employees"): ["Tell me how many employees {n} has."],
    ("mountain", "height"): ["Tell me how high {n} is.", "Do you know the height of {n}?"],
    ("lake", "depth"): ["Tell me how deep {n} is.", "Do you know the depth of {n}?"],
}
FACT_FOLLOW_TRAIN: dict[tuple[str, str], list[str]] = {
    ("country", "capital"): ["And its capital?", "What about its capital?"],
    ("country", "currency"): ["Which currency does it use?", "And its currency?"],
    ("country", "population"): ["How many people live there?", "And its population?"],
    ("city", "founded"): ["When was it founded?", "And when was it founded?"],
    ("city", "population"): ["How many people live there?", "What about its population?"],
    ("city", "country"): ["Which country is it in?"],
    ("person", "born"): ["When was he born?", "And when was she born?"],
    ("person", "invented"): ["What did he invent?", "What did she invent?"],
    ("person", "lived"): ["Where did he live?", "Where did she live?"],
    ("element", "symbol"): ["What is its symbol?"],
    ("element", "atomic number"): ["And its atomic number?"],
    ("element", "melts"): ["When does it melt?"],
    ("company", "makes"): ["What does it make?"],
    ("company", "based"): ["Where is it based?"],
    ("company", "founded"): ["When was it founded?"],
    ("mountain", "height"): ["How high is it?"],
    ("lake", "depth"): ["How deep is it?"],
}
ABOUT_TRAIN = ["Tell me about {n}.", "What do you know about {n}?", "Search for {n}.", "Look up {n}.",
               "Find information about {n}.", "{n}?", "Any facts about {n}?"]
ABOUT_EVAL = ["Give me some information on {n}."]

LOAD_TRAIN = ["Open document {i}.", "Load document {i}.", "Show me document {i}.", "What does document {i} say?",
              "LOAD {i}", "Load doc {i}.", "Can you open document number {i}?", "Read document {i}.",
              "Open doc {i}", "Show document {i}.", "I'd like to see document {i}.", "Could you load document {i}?",
              "Print document {i}.", "Let me read document {i}.", "document {i}", "Get document {i} for me.",
              "Bring up document {i}.", "Please load document number {i}.",
              "Open doc #{i}.", "document #{i} please", "Load no. {i}", "Can I see #{i}?", "read doc {i}"]
LOAD_FOLLOW_TRAIN = ["Open that document.", "Show me the full document.", "Load the first result.",
                     "Can you open the document?", "Show me the whole entry.", "Open it."]

NOTE_TRAIN = ["Take a note: {t}", "Note this: {t}", "Please write down: {t}", "Remember this: {t}",
              "Add a note: {t}", "Make a note that {t}"]
NOTE_TEXTS = ["buy milk", "call the bank tomorrow", "meeting at 10", "water the plants", "pay the rent",
              "read chapter 4", "the wifi password is on the fridge", "book a table for two",
              "send the report on Friday", "pick up the parcel", "renew the passport", "back up the laptop"]

CHAT: list[tuple[list[str], list[str]]] = [
    (["Hello!", "Hi", "Hey there", "hello", "Good morning!", "Hi there!", "Good evening.", "Good afternoon!",
      "Greetings!", "Hi, how do you do?"],
     ["Hello! How can I help you today?", "Hi! What can I do for you?"]),
    (["How are you?", "How are you doing today?", "How's it going?"],
     ["I'm doing well, thank you. How can I help?", "I'm fine, thanks for asking. What can I do for you?"]),
    (["Thanks!", "Thank you.", "thanks a lot", "Great, thanks!", "Thank you very much!", "Cheers!"],
     ["You're welcome!", "Glad I could help."]),
    (["Who are you?", "What are you?", "What is your name?"],
     ["I am a small assistant that runs in your terminal. I can search a knowledge base and do arithmetic."]),
    (["What can you do?", "How can you help me?", "What are your tools?"],
     ["I can search the knowledge base, open documents by id, calculate arithmetic and take notes."]),
    (["Bye!", "Goodbye.", "See you later.", "bye", "Have a nice evening!", "Take care!", "See you tomorrow.",
      "Good day to you!", "Sleep well!", "I'm off now, bye."], ["Goodbye! Have a nice day.", "See you!"]),
    (["Tell me a joke.", "Make me laugh.", "Do you know a joke?"],
     ["Why did the computer go to the doctor? It had a virus.",
      "I told my computer a joke about numbers, but it only counted the words."]),
    (["Are you a robot?", "Are you human?"], ["I am a language model, not a person."]),
    (["ok", "OK.", "Cool.", "Nice."], ["Let me know if you need anything else."]),
    (["Can you help me?", "I have a question.", "Can I ask you something?"],
     ["Of course. What would you like to know?"]),
]
CHAT_EVAL = [(["Hi, nice to meet you."], []), (["Thanks, that helps."], []), (["Good night!"], [])]

# Words that are nowhere in the knowledge base: questions about them get `no results`.
UNKNOWN_REAL = ["France", "Paris", "Berlin", "Einstein", "Tokyo", "Brazil", "Mozart", "Jupiter", "Everest",
                "Google", "Amazon", "Shakespeare", "Napoleon", "Egypt", "Canada", "Lisbon", "Oxygen",
                "Gold", "Newton", "Curie", "Nile", "Sahara", "Chicago", "Toyota", "Picasso"]
