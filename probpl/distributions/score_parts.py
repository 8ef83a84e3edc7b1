"""``ScoreParts``: the three pieces of a sample site's contribution to an ELBO.

``log_prob`` is the site's log density, ``score_function`` the term whose
gradient gives the REINFORCE estimator (zero for reparameterised sites), and
``entropy_term`` the term differentiated through the sample path (zero for
non-reparameterised sites).
"""

from collections import namedtuple

from .util import scale_and_mask


class ScoreParts(namedtuple("ScoreParts", ["log_prob", "score_function", "entropy_term"])):
    """A ``(log_prob, score_function, entropy_term)`` triple."""

    __slots__ = ()

    def scale_and_mask(self, scale=1.0, mask=None):
        """Scale and mask each part.

        The score function is masked but never scaled: it multiplies a
        downstream cost that already carries the scale.

        :param scale: a number or tensor.
        :param mask: None, a bool, or a bool tensor.
        :returns: a new :class:`ScoreParts`.
        """
        log_prob = scale_and_mask(self.log_prob, scale, mask)
        score_function = scale_and_mask(self.score_function, 1.0, mask)
        entropy_term = scale_and_mask(self.entropy_term, scale, mask)
        return ScoreParts(log_prob, score_function, entropy_term)
