"""What people read: the terminal summary, the HTML report and its plots, the baseline
view. Built from result documents only, never from analyses."""
