"""What a part's notebook uses but the learner does not write: Part 1's toy models and figures, Part 2's
figures, Part 3's side-by-side runs, and the plotly renderer that keeps figures in offline HTML exports."""
