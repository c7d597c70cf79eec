"""OpenFeature Remote Evaluation Protocol (OFREP): agents' configs as OpenFeature flags."""
