// The API page's "JavaScript with Streaming" example, with the client of the example before it.
import OpenAI from 'openai';

const client = new OpenAI({
  baseURL: process.env.PACKET_BASE_URL,
  apiKey: process.env.PACKET_KEY,
});

const stream = await client.chat.completions.create({
  model: 'auto',
  messages: [{ role: 'user', content: 'Tell me a story' }],
  stream: true,
});

for await (const chunk of stream) {
  const content = chunk.choices[0]?.delta?.content;
  if (content) {
    process.stdout.write(content);
  }
}
