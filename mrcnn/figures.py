"""Figure plumbing shared by the plotting modules (mrcnn.visualize, mrcnn.visualize_stats).

Given a ``path``, a figure is a plain ``matplotlib.figure.Figure`` (no pyplot,
no window, any backend) saved as a PNG; without one it is a pyplot figure that
is shown, as Matterport did. pyplot is imported only to show.
"""
import logging
import os

from matplotlib.figure import Figure

# The logger keeps the name of the module these functions were published from,
# so existing log filters on "mrcnn.visualize" still see their messages.
log = logging.getLogger("mrcnn.visualize")


def new_figure(figsize, path):
    """A Figure to draw on: an unmanaged one when saving to path, a pyplot one to show.

    Returns: matplotlib Figure.
    """
    if path is not None:
        return Figure(figsize=figsize)
    import matplotlib.pyplot as plt
    return plt.figure(figsize=figsize)


def finish(fig, path):
    """Save fig as a PNG at path (creating folders) or show it through pyplot.

    Figures made for a path are plain Figures, never registered with pyplot, so
    saving leaves no window and nothing to close. Returns: path (str) or None.
    """
    if path is None:
        import matplotlib.pyplot as plt
        plt.show()
        return None
    path = os.fspath(path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    log.debug("Saved figure %s", path)
    return path


def get_axes(ax, figsize, path):
    """Use the caller's Axes, or make a figure with one. Returns: (fig, ax, owns_figure)."""
    if ax is not None:
        return ax.figure, ax, False
    fig = new_figure(figsize, path)
    return fig, fig.add_subplot(1, 1, 1), True


def complete(fig, owns_figure, path):
    """Save or show a figure made by get_axes; a caller's Axes is only saved when path is given."""
    if owns_figure or path is not None:
        return finish(fig, path)
    return None
