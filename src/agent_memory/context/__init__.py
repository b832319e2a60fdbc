"""The read side: turning the store into the active context bundle (ACB) for one LLM call (PRODUCT.md §5).

``recall.build`` assembles it; ``policy`` says what a channel may load and how big each section may be;
``scoring`` ranks evidence; ``conflicts`` catches summaries that newer events contradict; ``hotset`` keeps
what a "continue" turn needs in memory; ``bundle`` is the shape callers get back.
"""
