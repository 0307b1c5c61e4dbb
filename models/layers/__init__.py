"""The parts every model family builds from, exported here so a model's imports read like a
parts list: attention cores, blocks, feed-forward and mixture-of-experts layers, positions,
embeddings and heads, adaptive computation, generated weights, convolutions, and the geometry
(cameras, tri-planes, volume rendering) of the 3D models."""
from models.layers import triplane
from models.layers.act import AdaptiveComputationTime, PonderResult, fixed_depth
from models.layers.attention import (BigBirdAttention, DenseAttention, LinearAttention, LinformerAttention,
                                     LocalAttention, LongformerAttention, MultiHeadAttention, NaiveSoftmaxAttention,
                                     PerformerAttention, ReformerAttention, SinkhornAttention, SparseAttention,
                                     SynthesizerAttention, can_cross_attend, cross_attention_error)
from models.layers.block import TransformerBlock
from models.layers.cameras import camera_rays, normalize_quaternion, pixel_centres
from models.layers.convolution import DynamicConvolution, LightweightConvolution, SeparableConv1d
from models.layers.embedding import TokenEmbedding
from models.layers.evolved import EvolvedDecoderBlock, EvolvedEncoderBlock
from models.layers.feedforward import ACTIVATIONS, FeedForward, activation
from models.layers.fourier import FourierFeatures
from models.layers.generated import GeneratedLinear, pool_weights_held
from models.layers.heads import make_head
from models.layers.mixer import MixerBlock, TokenMixingMLP
from models.layers.mixture_of_softmaxes import MixtureOfSoftmaxes
from models.layers.moe import SwitchFeedForward
from models.layers.patches import PatchEmbedding
from models.layers.perceiver import CrossAttention, PerceiverEncoder
from models.layers.pooling import check_pooling, pool
from models.layers.positions import LearnedPositions, SinusoidalPositions, make_positions, sinusoid
from models.layers.recurrent import RecurrentEncoder
from models.layers.relative_position import RelativePositionBias, causal_bias
from models.layers.router import PoolRouter, Routing, routing_diagnostics
from models.layers.staged import StagedModel
from models.layers.standardized_conv import StdConv2d
from models.layers.timestep import TimestepEmbedding
from models.layers.volume_rendering import RaySamples, bin_samples, composite, compositing_weights, sample_points

__all__ = [
    # attention and blocks
    "MultiHeadAttention", "DenseAttention", "NaiveSoftmaxAttention", "BigBirdAttention", "LinearAttention",
    "LinformerAttention", "LocalAttention", "LongformerAttention", "PerformerAttention", "ReformerAttention",
    "SinkhornAttention", "SparseAttention", "SynthesizerAttention", "CrossAttention", "PerceiverEncoder",
    "can_cross_attend", "cross_attention_error", "TransformerBlock", "EvolvedEncoderBlock", "EvolvedDecoderBlock", "MixerBlock", "TokenMixingMLP",
    # feed-forward, experts, generated weights
    "FeedForward", "activation", "ACTIVATIONS", "SwitchFeedForward", "GeneratedLinear", "pool_weights_held",
    "PoolRouter", "Routing", "routing_diagnostics",
    # depth: adaptive computation, recurrence, stages
    "AdaptiveComputationTime", "PonderResult", "fixed_depth", "RecurrentEncoder", "StagedModel",
    # inputs, positions, outputs
    "TokenEmbedding", "PatchEmbedding", "FourierFeatures", "TimestepEmbedding", "LearnedPositions",
    "SinusoidalPositions", "make_positions", "sinusoid", "RelativePositionBias", "causal_bias", "pool",
    "check_pooling", "make_head", "MixtureOfSoftmaxes",
    # convolutions
    "DynamicConvolution", "LightweightConvolution", "SeparableConv1d", "StdConv2d",
    # 3D geometry
    "camera_rays", "pixel_centres", "normalize_quaternion", "triplane", "RaySamples", "bin_samples",
    "sample_points", "composite", "compositing_weights",
]
