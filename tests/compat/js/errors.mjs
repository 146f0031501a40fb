// The API page's "JavaScript Error Handling Example", unchanged but for base URL and key.
import OpenAI from 'openai';

const client = new OpenAI({
  baseURL: process.env.PACKET_BASE_URL,
  apiKey: process.env.PACKET_KEY,
});

try {
  const response = await client.chat.completions.create({
    model: 'auto',
    messages: [{ role: 'user', content: 'Hello!' }],
  });
  console.log(response.choices[0].message.content);
} catch (error) {
  if (error instanceof OpenAI.AuthenticationError) {
    console.error('Invalid API key');
  } else if (error instanceof OpenAI.RateLimitError) {
    console.error('Rate limited, retrying...');
    // Implement retry logic
  } else if (error instanceof OpenAI.APIError) {
    console.error(`API error: ${error.status} - ${error.message}`);
  }
}
